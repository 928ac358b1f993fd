"""Compares `dsv3 template --cases` output with an oracle's, case by case.

Usage: python3 compare_rendered.py ORACLE_NAME CASES_JSON EXPECTED_JSONL GOT_JSONL [SKIP_JSON KEY]
A rendered case must equal the oracle's byte for byte. A case the oracle fails must fail in dsv3
too; when the oracle names the template line that failed ({"error", "line", "first_line"},
jinja2), dsv3's message must name a line in first_line..line ("chat template line L, column C:
..."): the same line for a syntax error, a line of the failing tag for an error at run time. SKIP_JSON's list KEY
holds {"cases": [indices], "why": reason} entries: known, explained differences, not compared.
Exit 1 on any other difference.
"""
import json
import re
import sys


def main():
    name, cases_path, expected_path, got_path = sys.argv[1:5]
    skip = set()
    if len(sys.argv) > 6:
        for entry in json.load(open(sys.argv[5], encoding="utf-8"))[sys.argv[6]]:
            skip.update(entry["cases"])
    cases = json.load(open(cases_path, encoding="utf-8"))
    expected = [json.loads(line) for line in open(expected_path, encoding="utf-8")]
    got = [json.loads(line) for line in open(got_path, encoding="utf-8")]
    if not (len(cases) == len(expected) == len(got)):
        print(f"FAIL: {len(cases)} cases, {len(expected)} expected lines, {len(got)} rendered", file=sys.stderr)
        sys.exit(1)
    bad = n_errors = n_lines = 0
    for i, (want, have) in enumerate(zip(expected, got)):
        if i in skip:
            continue
        problem = None
        if isinstance(want, dict) and isinstance(have, dict):
            n_errors += 1
            line = want.get("line")
            if line:
                first = want.get("first_line", line)
                m = re.search(r"chat template line (\d+), column \d+", have["error"])
                if not m or not first <= int(m.group(1)) <= line:
                    problem = f"the error should name line {line}" if first == line else f"the error should name a line in {first}..{line}"
                else:
                    n_lines += 1
        elif want != have:
            problem = "differs"
        if problem:
            bad += 1
            if bad <= 5:
                msgs = json.dumps(cases[i].get("messages"), ensure_ascii=False)
                print(f"case {i} {problem}: messages {msgs[:300]}\n  {name}: {want!r:.600}\n  dsv3: {have!r:.600}",
                      file=sys.stderr)
    n = len(cases) - len(skip)
    if bad:
        print(f"FAIL: {bad} of {n} chat cases differ from {name}", file=sys.stderr)
        sys.exit(1)
    lines = f", {n_lines} of them at the template line the oracle names" if n_lines else ""
    print(f"OK: {n} chat cases rendered byte for byte as {name} ({n_errors} fail in both{lines}); "
          f"{len(skip)} known differences skipped")


if __name__ == "__main__":
    main()
