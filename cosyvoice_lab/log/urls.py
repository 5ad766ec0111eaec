"""Where a log is: a folder, or a PostgreSQL URL; and how a URL is shown without its password.

libpq accepts a password holding a raw ``#``, ``?`` or ``/``, where a URL parser (and
``sqlalchemy.engine.make_url``) would stop at the first of them and show the rest as the host,
the query or the fragment: so the password is found in the raw text (``_split_password``),
checked against libpq's own reading (psycopg's ``conninfo_to_dict``), and redacted from that.
The URL itself is handed to libpq unchanged (``database.py`` connects through psycopg).
"""

from __future__ import annotations

from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")


def is_url(location: object) -> bool:
    """Whether a log location is a PostgreSQL URL (``postgresql://`` or ``postgres://``), not a folder."""
    return isinstance(location, str) and location.strip().lower().startswith(SCHEMES)


def _split_password(url: str) -> tuple[str, str | None, str]:
    """``(scheme://user, password or None, @host...)`` of a URL, read from its raw text.

    A password is what lies between the first ``:`` after ``://`` and the LAST ``@``: so one that
    holds a raw ``#``, ``?``, ``/`` or ``@`` (libpq accepts ``#`` and ``?`` unencoded) is taken
    whole, where a URL parser would stop at the first of them and show the rest as the host, the
    path, the query or the fragment. Errs towards hiding more (a query holding ``@``), never less.
    """
    text = url.strip()
    start = text.find("://") + 3
    colon, at = text.find(":", start), text.rfind("@")
    if start < 3 or colon < 0 or at < colon or any(c in text[start:colon] for c in "@/?#"):
        return text, None, ""  # no "user:" before the host: no password in the authority
    return text[:colon], text[colon + 1 : at], text[at:]


def _is_password(parameter: str) -> bool:
    return unquote(parameter.partition("=")[0]).strip().lower() == "password"


def _redact_query(url: str, keep_password: bool) -> str:
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and (keep_password or not _is_password(p))]
    query = "&".join("password=***" if _is_password(p) else p for p in kept)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) shown as ``***``."""
    head, password, tail = _split_password(url)
    return _redact_query(head + (":***" if password is not None else "") + tail, keep_password=True)


def without_password(url: str) -> str:
    """``url`` with no password at all (libpq then finds one in ``PGPASSWORD`` or ``~/.pgpass``)."""
    head, _, tail = _split_password(url)
    return _redact_query(head + tail, keep_password=False)


def url_secrets(url: str) -> tuple[str, ...]:
    """Every text of the password a URL carries, as typed and percent-decoded, in the authority or a
    ``password=`` parameter, and as libpq itself reads it (to scrub from a driver's messages),
    longest first; empty if none."""
    typed = [p.partition("=")[2] for p in urlsplit(_split_password(url)[2][1:]).query.split("&") if _is_password(p)]
    typed += [p.partition("=")[2] for p in urlsplit(url.strip()).query.split("&") if _is_password(p)]
    in_authority = _split_password(url)[1]
    if in_authority:
        typed.append(in_authority)
    parsed = _libpq_password(url)
    if parsed:
        typed.append(parsed)
    forms = {form for text in typed for form in (text, unquote(text), unquote_plus(text)) if form}
    return tuple(sorted(forms, key=len, reverse=True))


def _libpq_password(url: str) -> str | None:
    """The password as libpq parses the URL (None: none, psycopg missing, or libpq refuses it)."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    try:
        password = conninfo_to_dict(url.strip()).get("password")
    except Exception:  # any refusal: the caller reports the URL as unreadable
        return None
    return None if password is None else str(password)


def ambiguous_password(url: str) -> bool:
    """Whether libpq would read the URL's password differently from what was typed (a raw ``/``,
    ``@`` or ``%`` in it): the connection would go to the wrong host, or a piece of the password
    would show in the driver's messages as a host or a port. Such a URL is refused before use."""
    password = _split_password(url)[1]
    if password is None:
        return False
    try:
        typed = unquote(password, errors="strict")
    except UnicodeDecodeError:
        return True
    return _libpq_password(url) != typed
