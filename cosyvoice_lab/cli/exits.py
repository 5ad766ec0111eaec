"""Exit codes scripts can trust (the README lists them):

0 success · 1 some takes this run sent failed (or their outcome could not be recorded) · 2 bad input
(nothing sent) · 3 no or rejected API key · 4 the service or network failed · 130 interrupted.
"""

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_AUTH, EXIT_SERVICE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
