#!/usr/bin/env python3
"""Writes one manual page per strata command (strata.1, strata-run.1, strata-volume-ls.1, ...)
from the command tree the binary describes (`strata --experimental-dump-help`, so the pages
say what the flags say) and the examples in docs/man-examples.md.

    scripts/man.py HELP.json docs/man-examples.md OUTDIR
"""
import json
import re
import sys

# Management forms that are another command under a Docker name: their page's examples and
# "see also" are that command's.
ALIASES = {"image ls": "images", "image rm": "rmi", "container ls": "ps", "system info": "info"}


def esc(text):
    """Text for roff: backslashes, and a leading dot or quote that would read as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


def examples(path):
    out, current = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("## "):
                current = line[3:].strip()
                out[current] = []
            elif current is not None and line.startswith("$ "):
                out[current].append([line[2:], ""])
            elif current is not None and line and out[current]:
                out[current][-1][1] += (" " if out[current][-1][1] else "") + line
    return out


def names(arg):
    parts = []
    for n in arg.get("names", []):
        parts.append(("-" if n["kind"] == "short" else "--") + n["name"])
    return parts


def synopsis(path, command):
    words = [f"\\fB{esc(' '.join(path))}\\fR"]
    if any(a["kind"] != "positional" and a.get("shouldDisplay", True) for a in command.get("arguments", [])):
        words.append("[\\fIoptions\\fR]")
    for a in command.get("arguments", []):
        if a["kind"] != "positional" or not a.get("shouldDisplay", True):
            continue
        value = esc(a.get("valueName", "arg")) + ("..." if a.get("isRepeating") else "")
        words.append(f"[\\fI{value}\\fR]" if a.get("isOptional") else f"\\fI{value}\\fR")
    if command.get("subcommands"):
        words.append("\\fIcommand\\fR")
    return " ".join(words)


def page(path, command, all_examples, parent_page):
    key = " ".join(path[1:]) or "strata"
    canonical = ALIASES.get(key, key)
    if canonical not in all_examples and len(path) > 2:
        canonical = path[-1]  # `container stop` is `stop`
    title = "-".join(path)
    lines = [f'.TH {title.upper()} 1 "" "strata" "strata manual"', ".SH NAME",
             f"{esc(title)} \\- {esc(command.get('abstract', ''))}", ".SH SYNOPSIS", synopsis(path, command),
             ".SH DESCRIPTION", esc(command.get("abstract", ""))]
    if command.get("discussion"):
        lines += [".PP", esc(command["discussion"])]
    if key in ALIASES:
        lines += [".PP", f"The same command as \\fBstrata {esc(ALIASES[key])}\\fR, under Docker's management name; "
                         f"its options are those of strata\\-{esc(ALIASES[key])}(1)."]
    options = [a for a in command.get("arguments", []) if a["kind"] != "positional" and a.get("shouldDisplay", True)]
    positionals = [a for a in command.get("arguments", []) if a["kind"] == "positional" and a.get("shouldDisplay", True)
                   and a.get("parsingStrategy") != "allUnrecognized"]
    if positionals:
        lines.append(".SH ARGUMENTS")
        for a in positionals:
            lines += [".TP", f"\\fI{esc(a.get('valueName', 'arg'))}\\fR", esc(a.get("abstract", ""))]
    if options:
        lines.append(".SH OPTIONS")
        for a in options:
            flag = ", ".join(f"\\fB{esc(n)}\\fR" for n in names(a))
            if a["kind"] == "option":
                flag += f" \\fI{esc(a.get('valueName', 'value'))}\\fR"
            text = a.get("abstract", "")
            if a.get("defaultValue") not in (None, "", "false") and a["kind"] == "option":
                text += f" (default: {a['defaultValue']})"
            lines += [".TP", flag, esc(text)]
    subs = [s for s in command.get("subcommands", []) or [] if s.get("shouldDisplay", True) and s["commandName"] != "help"]
    if subs:
        lines.append(".SH COMMANDS")
        for s in subs:
            lines += [".TP", f"\\fB{esc(' '.join(path[1:] + [s['commandName']]))}\\fR",
                      esc(s.get("abstract", "")) + f" See {esc('-'.join(path + [s['commandName']]))}(1)."]
    found = all_examples.get(canonical, [])
    if not found:
        raise SystemExit(f"man.py: no examples for '{key}' in docs/man-examples.md")
    lines.append(".SH EXAMPLES")
    for cmd, what in found:
        lines += [".PP", esc(what), ".PP", ".RS 4", ".EX", esc(cmd), ".EE", ".RE"]
    lines.append(".SH EXIT STATUS")
    lines.append("0 on success; 1 bad input (a damaged archive, a refused entry); 2 not found; 3 in use or conflicting; "
                 "64 a wrong command line; 70 an internal error; 71 a system call failed; 74 a damaged store. "
                 "\\fBrun\\fR, \\fBexec\\fR and \\fBstart \\-a\\fR exit with the command's code "
                 "(125 when strata fails, 126 not executable, 127 not found).")
    see = ["strata(1)"] if len(path) > 1 else []
    if parent_page and parent_page != "strata":
        see.append(f"{parent_page}(1)")
    if key in ALIASES:
        see.append(f"strata-{ALIASES[key]}(1)")
    if see:
        lines += [".SH SEE ALSO", esc(", ".join(see))]
    return title, "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        tree = json.load(f)["command"]
    all_examples = examples(sys.argv[2])
    out = sys.argv[3]
    written = []

    def walk(command, path, parent):
        if not command.get("shouldDisplay", True) or command["commandName"] == "help":
            return
        title, text = page(path, command, all_examples, parent)
        with open(f"{out}/{title}.1", "w", encoding="utf-8") as f:
            f.write(text)
        written.append(title)
        for s in command.get("subcommands", []) or []:
            walk(s, path + [s["commandName"]], title)

    walk(tree, ["strata"], None)
    print(f"{len(written)} pages in {out}")


if __name__ == "__main__":
    main()
