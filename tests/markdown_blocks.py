"""Run the code blocks of a Markdown file as its reader would: the shared part of test_readme.py and test_docs.py.

A fenced block opens with three backticks and an info string whose first word is the language; further words are
flags. One flag exists, `illustrative`: the block is shown to the reader but not run. An illustrative Python block
is still compiled and an illustrative shell block still parsed (`bash -n`), so both stay valid code.

    python                 executed, in order, in one namespace (as if pasted into one Python session)
    bash, sh, console      executed by bash in the same working directory, `transformer-networks` on the PATH;
                           the block fails the test unless every command exits with status 0
    python illustrative    compiled only
    bash illustrative      parsed only
    anything else          (text, yaml, no language) left alone
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PYTHON = ("python", "py")
SHELL = ("bash", "sh", "shell", "console")
FLAGS = ("illustrative",)

_FENCE = re.compile(r"^```([^`\n]*)\n(.*?)^```[ \t]*$", flags=re.S | re.M)


@dataclass
class Block:
    language: str  # the first word of the info string, lower case ("" for a bare fence)
    flags: tuple[str, ...]  # the other words
    code: str
    line: int  # the line of the opening fence, counting from 1

    @property
    def illustrative(self) -> bool:
        return "illustrative" in self.flags

    @property
    def is_python(self) -> bool:
        return self.language in PYTHON

    @property
    def is_shell(self) -> bool:
        return self.language in SHELL


def code_blocks(text: str) -> list[Block]:
    """Every fenced block at the start of a line, in order. Unknown flags are an error (a typo would silently turn
    an executed block into prose)."""
    blocks = []
    for match in _FENCE.finditer(text):
        words = match.group(1).split()
        language, flags = (words[0].lower(), tuple(words[1:])) if words else ("", ())
        unknown = [f for f in flags if f not in FLAGS]
        line = text.count("\n", 0, match.start()) + 1
        if unknown and (language in PYTHON or language in SHELL):
            raise ValueError(f"line {line}: unknown code block flag(s) {unknown}; known: {list(FLAGS)}")
        blocks.append(Block(language, flags, match.group(2), line))
    return blocks


def python_blocks(text: str) -> list[str]:
    """The code of the executed Python blocks."""
    return [b.code for b in code_blocks(text) if b.is_python and not b.illustrative]


def shell_env(directory: Path) -> dict[str, str]:
    """The environment for shell blocks: this interpreter's scripts directory first on the PATH, so that
    `transformer-networks` and `python` are the ones under test. Where the console script is missing (an install
    without scripts), a shim in `directory` runs `python -m transformer_networks` instead."""
    bin_dirs = [str(Path(sys.executable).parent)]
    if shutil.which("transformer-networks", path=bin_dirs[0]) is None:
        shim_dir = directory / ".doc-bin"
        shim_dir.mkdir(exist_ok=True)
        shim = shim_dir / "transformer-networks"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m transformer_networks "$@"\n', encoding="utf-8")
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
        bin_dirs.insert(0, str(shim_dir))
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([*bin_dirs, env.get("PATH", "")])
    env["MPLBACKEND"] = "Agg"
    return env


def run_blocks(path: Path, directory: Path, *, timeout: float = 300) -> list[Block]:
    """Run the blocks of the Markdown file `path` in order, with `directory` as the working directory (the caller
    changes into it). Returns the blocks that ran. Raises AssertionError naming the block that failed."""
    text = path.read_text(encoding="utf-8")
    namespace: dict = {"__name__": "__main__"}
    env = shell_env(directory)
    ran = []
    for block in code_blocks(text):
        where = f"{path.name}:{block.line}"
        if block.is_python:
            # Padded with blank lines so that a traceback names the line of the Markdown file itself.
            code = compile("\n" * block.line + block.code, str(path), "exec")
            if not block.illustrative:
                exec(code, namespace)
                ran.append(block)
        elif block.is_shell:
            args = ["bash", "-n"] if block.illustrative else ["bash", "-e", "-o", "pipefail"]
            result = subprocess.run(
                [*args, "-c", block.code], cwd=directory, env=env, capture_output=True, text=True, timeout=timeout
            )
            assert result.returncode == 0, (
                f"{where}: shell block exited with {result.returncode}\n{block.code}\n"
                f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"
            )
            if not block.illustrative:
                ran.append(block)
    return ran
