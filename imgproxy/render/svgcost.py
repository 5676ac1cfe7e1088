"""An SVG's rendering work, estimated before librsvg parses it.

Counting ``<`` (:func:`imgproxy.render.source._guard_svg`) bounds the
elements written in the file, not the work they stand for. Three ways to
make a small document expensive, and what is counted here:

- **entity nesting**: ``<!ENTITY b "&a;&a;…">`` expands into elements that are
  not in the bytes. The document is parsed with expat (no DTD or external
  entity is ever loaded), so elements are counted *after* expansion, and the
  parse stops as soon as the count passes the limit.
- **references**: ``<use href="#g">``, ``fill="url(#p)"`` (patterns, filters,
  masks, markers, clip paths) draw the referenced subtree again, and a subtree
  that references others multiplies: ten ``<use>`` of a group of ten ``<use>``
  of … is 10ⁿ elements in a few hundred bytes. Each element's cost is its
  subtree plus the cost of everything its subtree references, and the
  document's is the sum. Elements in ``<defs>`` are counted as if drawn, so it
  is an upper bound.
- **filters**: a filter primitive (``<feGaussianBlur>``, ``<feTurbulence>``,
  …) works on every pixel of its region; each counts as
  :data:`FILTER_WEIGHT` elements, wherever it is referenced from.
- **text**: a few ``<text>`` elements can hold megabytes of characters, and
  laying them out costs per character, and more than linearly in the length
  of one unbroken run (librsvg shapes a run between two tags as one piece:
  10,000 characters take 1.5–3 s, 20,000 take 13 s). A character in short
  lines costs about two ``<rect>``; characters inside ``<text>`` count as
  elements by :func:`_text_weight`.

And nesting deeper than :data:`MAX_DEPTH` is refused outright (librsvg
recurses through the tree). All of it is a 413 on ``max_svg_elements``.
"""

from __future__ import annotations

import re
from xml.parsers import expat

from ..errors import TooLarge

MAX_DEPTH = 256
FILTER_WEIGHT = 100
#: A chain of references deeper than this (a -> b -> c ...) is refused.
MAX_REFERENCE_DEPTH = 64
#: Laying out one character of text costs about what drawing this many elements does.
CHAR_WEIGHT = 2
#: A run of ``n`` characters between two tags costs ``n * n / RUN_QUADRATIC`` elements more.
RUN_QUADRATIC = 500
_URL_REF = re.compile(r"url\(\s*['\"]?#([^'\")\s]+)")


class _Over(Exception):
    pass


def check_svg_cost(data: bytes, max_elements: int) -> None:
    """Raise 413 if rendering ``data`` would cost more than ``max_elements`` elements."""
    counter = _Counter(max_elements)
    parser = expat.ParserCreate()
    parser.StartElementHandler = counter.start
    parser.EndElementHandler = counter.end
    parser.CharacterDataHandler = counter.text
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except _Over as exc:
        raise TooLarge(str(exc), limit="max_svg_elements") from None
    except expat.ExpatError:
        pass  # librsvg decides what a broken document is; what was read is still costed
    cost = counter.total()
    if cost > max_elements:
        raise TooLarge(f"the SVG would draw about {cost} elements (references, filters and text expanded); "
                       f"the limit is {max_elements}", limit="max_svg_elements")


class _Counter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.elements = 0
        self.refs: list[str] = []  # every reference, in document order
        self.stack: list[list[int]] = [[0, 0]]  # per open element: [weight of its subtree, first ref index]
        self.ids: list[str | None] = [None]
        self.subtrees: dict[str, tuple[int, int, int]] = {}  # id -> (weight, refs start, refs end)
        self.in_text = 0  # open <text> elements
        self.run = 0  # characters since the last tag, inside <text>
        self.text_weight = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.elements += 1
        self.run = 0
        if self.elements > self.limit:
            raise _Over(f"the SVG has over {self.limit} elements once its entities are expanded")
        if len(self.stack) > MAX_DEPTH:
            raise _Over(f"the SVG nests elements over {MAX_DEPTH} deep")
        local = name.rpartition(":")[2]
        self.in_text += local == "text"
        for attr, value in attrs.items():
            if attr.rpartition(":")[2] == "href" and value.startswith("#"):
                self.refs.append(value[1:])
            elif "url(" in value:
                self.refs.extend(_URL_REF.findall(value))
        weight = FILTER_WEIGHT if local.startswith("fe") and local[2:3].isupper() else 1
        self.stack.append([weight, len(self.refs)])
        self.ids.append(attrs.get("id"))

    def end(self, name: str) -> None:
        self.run = 0
        self.in_text -= name.rpartition(":")[2] == "text"
        weight, first = self.stack.pop()
        id = self.ids.pop()
        if id is not None:
            self.subtrees.setdefault(id, (weight, first, len(self.refs)))
        self.stack[-1][0] += weight

    def text(self, data: str) -> None:
        if not self.in_text:
            return  # <style>, <desc>, <metadata>… are not laid out
        before = _text_weight(self.run)
        self.run += len(data)
        added = _text_weight(self.run) - before
        self.stack[-1][0] += added
        self.text_weight += added
        if self.elements + self.text_weight > self.limit:
            raise _Over(f"the SVG's text would cost as much to lay out as over {self.limit} elements")

    def total(self) -> int:
        memo: dict[str, int] = {}
        limit = self.limit

        def cost(id: str, depth: int) -> int:
            if id in memo:
                return memo[id]
            if depth > MAX_REFERENCE_DEPTH:
                raise TooLarge(f"the SVG chains references over {MAX_REFERENCE_DEPTH} deep",
                               limit="max_svg_elements")
            subtree = self.subtrees.get(id)
            if subtree is None:
                return 0
            memo[id] = 0  # a cycle draws nothing more (librsvg refuses it)
            weight, first, end = subtree
            for ref in self.refs[first:end]:
                weight += cost(ref, depth + 1)
                if weight > limit:
                    break  # already too much: no need to know how much
            memo[id] = weight
            return weight

        total = self.stack[0][0]
        for ref in self.refs:
            total += cost(ref, 0)
            if total > limit:
                break
        return total


def _text_weight(run: int) -> int:
    """What laying out one unbroken run of ``run`` characters costs, in elements."""
    return run * CHAR_WEIGHT + run * run // RUN_QUADRATIC
