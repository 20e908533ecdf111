"""Reading rendered pages in tests: parse the HTML instead of matching strings where structure matters."""

from __future__ import annotations

from html.parser import HTMLParser


class PageScan(HTMLParser):
    """Collects what the CSP forbids (inline script, style, handlers) and a few elements tests look for."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.inline_scripts: list[str] = []
        self.inline_styles: list[str] = []
        self.handlers: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if "style" in values:
            self.inline_styles.append(f"{tag} style={values['style']!r}")
        if tag == "style":
            self.inline_styles.append("<style>")
        if tag == "script" and not values.get("src"):
            self._in_script = True
            self.inline_scripts.append("<script> without src")
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def assert_csp_clean(self) -> None:
        """Nothing the Content-Security-Policy would block."""
        assert (self.inline_scripts, self.inline_styles, self.handlers) == ([], [], [])
