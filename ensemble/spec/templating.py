"""Input-deck templating.

The default engine replaces ``%%name%%`` tokens (``name`` is a Python
identifier) with sample values and nothing else: ``100%%``, bash's
``${#a[@]}`` and any other text pass through untouched.  Write ``\\%%name%%``
to keep a literal ``%%name%%`` (the backslash is removed).

Jinja2 is used only when asked for (``template_engine="jinja"``), with
``StrictUndefined`` and no HTML escaping.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensemble.errors import SpecError, TemplateError

TOKEN = re.compile(r"(\\?)%%([A-Za-z_][A-Za-z0-9_]*)%%")
ENGINES = ("tokens", "jinja")
LAUNCH_TOKENS = ("ensemble_launch", "themis_launch")
#: Tokens the ensemble fills itself; samples may not use these labels.
RESERVED_TOKENS = (*LAUNCH_TOKENS, "run_id", "run_dir")


def format_value(value: Any) -> str:
    """Text written in place of a token."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def check_engine(engine: str) -> str:
    """Validate a ``template_engine`` option."""
    if engine not in ENGINES:
        raise SpecError(f"template_engine: expected one of {ENGINES}, got {engine!r}")
    if engine == "jinja":
        try:
            import jinja2  # noqa: F401
        except ImportError:
            raise SpecError("template_engine: 'jinja' needs jinja2 (pip install 'ensemble[jinja]')") from None
    return engine


@dataclass(frozen=True)
class Template:
    """A parsed text file, rendered once per run."""

    source: str
    text: str
    engine: str = "tokens"
    strict: bool = True

    @classmethod
    def load(cls, path: str | Path, engine: str = "tokens", strict: bool = True) -> "Template":
        """Read a text file; raise TemplateError if it is not UTF-8 text."""
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")  # line endings kept as they are (CRLF stays CRLF)
        except UnicodeDecodeError:
            raise TemplateError(f"{path}: not a UTF-8 text file, cannot be parsed for tokens") from None
        if "\0" in text:
            raise TemplateError(f"{path}: binary file, cannot be parsed for tokens")
        return cls(str(path), text, engine, strict)

    def tokens(self) -> dict[str, int]:
        """Unescaped token names and the first line each appears on."""
        found: dict[str, int] = {}
        if self.engine != "tokens":
            return found
        for match in TOKEN.finditer(self.text):
            if not match.group(1):
                found.setdefault(match.group(2), self.text.count("\n", 0, match.start()) + 1)
        return found

    def check(self, known: set[str], where: str = "") -> None:
        """Raise TemplateError for the first token not in ``known`` (when strict)."""
        if not self.strict:
            return
        for name, line in self.tokens().items():
            if name not in known:
                suffix = f" ({where})" if where else ""
                raise TemplateError(
                    f"{self.source}, line {line}: unknown token %%{name}%%{suffix}; "
                    "known: " + (", ".join(sorted(known)) or "none")
                    + " (escape it as \\%%name%% or pass strict_templates=False)"
                )

    def render(self, values: Mapping[str, Any]) -> str:
        """The text with every token replaced."""
        if self.engine == "jinja":
            return self._render_jinja(values)

        def replace(match: re.Match[str]) -> str:
            escaped, name = match.groups()
            if escaped:
                return match.group(0)[1:]
            if name in values:
                return format_value(values[name])
            if self.strict:
                line = self.text.count("\n", 0, match.start()) + 1
                raise TemplateError(f"{self.source}, line {line}: unknown token %%{name}%%")
            return match.group(0)

        return TOKEN.sub(replace, self.text)

    def _render_jinja(self, values: Mapping[str, Any]) -> str:
        import jinja2

        env = jinja2.Environment(
            undefined=jinja2.StrictUndefined if self.strict else jinja2.Undefined,
            autoescape=False,
            keep_trailing_newline=True,
        )
        try:
            sample = {k: v for k, v in values.items() if k not in RESERVED_TOKENS}
            return env.from_string(self.text).render({"sample": sample, **values})
        except jinja2.TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f", line {line}" if line else ""
            raise TemplateError(f"{self.source}{where}: {exc}") from None

    def render_to(self, dest: str | Path, values: Mapping[str, Any]) -> None:
        """Render into ``dest`` keeping the source file's permission bits."""
        dest = Path(dest)
        dest.write_bytes(self.render(values).encode("utf-8"))
        dest.chmod(Path(self.source).stat().st_mode & 0o7777)
