"""Count import circles and upward arrows in cosyvoice_lab, with grimp (which import-linter ships).

A circle is a group of modules that import one another, directly or through others (a strongly
connected component of the import graph; imports inside functions count, as they run). An
upward arrow is a module importing the front door (``cosyvoice_lab`` itself), which sits above
everything. import-linter's contracts in pyproject.toml keep the circles fixed that were found;
this counts all of them::

    python scripts/import_circles.py            # run-time imports (as the contracts see them)
    python scripts/import_circles.py --typing   # imports under TYPE_CHECKING too
"""

from __future__ import annotations

import sys

import grimp


def import_graph(typing: bool = False) -> dict[str, set[str]]:
    """Each module of the package -> the modules of the package it imports."""
    graph = grimp.build_graph("cosyvoice_lab", exclude_type_checking_imports=not typing)
    modules = set(graph.modules)
    return {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in sorted(modules)}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return sorted(found)


def upward_arrows(edges: dict[str, set[str]]) -> list[str]:
    """Modules that import the front door."""
    return sorted(m for m, imported in edges.items() if m != "cosyvoice_lab" and "cosyvoice_lab" in imported)


def main(argv: list[str]) -> int:
    edges = import_graph(typing="--typing" in argv)
    found, up = circles(edges), upward_arrows(edges)
    print(f"circles: {len(found)}")
    for group in found:
        print("  " + " <-> ".join(group))
    print(f"upward arrows (imports of the front door): {len(up)}")
    for module in up:
        print(f"  {module} -> cosyvoice_lab")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
