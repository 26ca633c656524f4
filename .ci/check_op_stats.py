"""Checks a logdir's profile with xprof's own converters, against trace-export's report.

framework_op_stats must list every call site as one host op, with the occurrences and self
time that `trace-export report` gives it; the overview page must list the report's steps,
mostly host compute, and count the host's time as framework op time; Input Pipeline
Analysis must list exactly the call sites named with an input op type, as often as they ran.

Usage, with the oracle venv's python (xprof installed):
    check_op_stats.py LOGDIR TRACE_EXPORT_BINARY
"""
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

from xprof.convert import raw_to_tool_data

# A step marker's own time, an op of the profile that the report leaves out.
SYNTHETIC_OP = re.compile(r".*/self(_\d+)?:Self")
# An op full name as xprof parses it: a name, one colon, a type.
OP_NAME = re.compile(r"[^:]+:[A-Z_][A-Za-z0-9_]*")

errors = []


def expect(condition, message):
    if not condition:
        errors.append(message)
    return condition


@contextlib.contextmanager
def captured_stderr():
    """Keeps xprof's native log lines (file descriptor 2) out of the output; gives them back."""
    sys.stderr.flush()
    saved = os.dup(2)
    log = {"text": ""}
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            log["text"] = tmp.read().decode("utf-8", "replace")


def convert(path, tool):
    """xprof's conversion of one .xplane.pb file, as the profile plugin makes it."""
    with captured_stderr() as log:
        data, _ = raw_to_tool_data.xspace_to_tool_data([path], tool, {"use_saved_result": False})
    if data is None:
        sys.exit(f"check_op_stats: xprof could not convert {path} to {tool}:\n{log['text'][-2000:]}")
    return json.loads(data)


def table_rows(table):
    ids = [column["id"] for column in table["cols"]]
    return [dict(zip(ids, (cell.get("v") for cell in row["c"]))) for row in table["rows"]]


def close(xprof_us, report_ns, count):
    # xprof sums picoseconds; the report rounds each duration, and its self time sum, to the
    # nanosecond.
    return abs(xprof_us - report_ns / 1000) <= 0.01 + 0.001 * count


def check_op_stats(path, report):
    tables = convert(path, "framework_op_stats")
    # The first table holds every op, IDLE included.
    rows = [r for r in table_rows(tables[0]) if r["host_or_device"] == "Host"]
    ops = {f"{r['operation']}:{r['type']}": r for r in rows if r["type"] != "IDLE"}
    expect(len(ops) == len(rows) - 1, f"{path}: rows by op name are not distinct: {rows}")
    claimed = set()
    compared = 0
    for site in report["sites"]:
        name = site["name"]
        # A root step marker keeps its own name, which no op name equals, unless the name
        # is an op name itself (`augment:Preprocessing`, which names its type).
        names_its_type = OP_NAME.fullmatch(name) is not None
        op_names = [op for op in site["ops"] if op != name or names_its_type]
        is_marker = name in site["ops"] and not names_its_type
        found = [ops[op] for op in op_names if op in ops]
        claimed.update(op for op in op_names if op in ops)
        expect(
            len(found) == len(op_names),
            f"{name!r}: ops {op_names} are not all in framework_op_stats",
        )
        if not op_names:
            continue
        occurrences = sum(r["occurrences"] for r in found)
        if is_marker:
            # Root markers and other events of one name: only the latter are ops.
            expect(0 < occurrences < site["count"], f"{name!r}: {occurrences} occurrences")
            continue
        self_us = sum(r["total_self_time"] for r in found)
        total_us = sum(r["total_time"] for r in found)
        expect(
            occurrences == site["count"],
            f"{name!r}: {occurrences:g} occurrences in xprof, {site['count']} in the report",
        )
        expect(
            close(self_us, site["self_ns"], site["count"]),
            f"{name!r}: self time {self_us} µs in xprof, {site['self_ns']} ns in the report",
        )
        expect(
            close(total_us, site["total_ns"], site["count"]),
            f"{name!r}: total time {total_us} µs in xprof, {site['total_ns']} ns in the report",
        )
        compared += 1
    unclaimed = [op for op in ops if op not in claimed and not SYNTHETIC_OP.fullmatch(op)]
    expect(not unclaimed, f"ops that are no call site of the report: {unclaimed}")
    expect(compared > 0, f"{path}: no call site to compare")
    print(f"framework_op_stats: {len(ops)} host ops; {compared} call sites match the report")
    for op, row in sorted(ops.items(), key=lambda item: -item[1]["total_self_time"]):
        print(f"  {op:<44} {row['occurrences']:>8g} x  self {row['total_self_time']:>12.3f} µs")


# Op types that xprof's Input Pipeline Analysis counts as input work.
INPUT_TYPES = {"Preprocessing": "Preprocessing", "Read": "Demanded file read", "Enqueue": "Enqueue"}


def check_input_pipeline(path, report):
    """Call sites named with an input op type (`augment:Preprocessing`) are the input ops."""
    tables = convert(path, "input_pipeline_analyzer")
    listed = {}
    for table in tables:
        if any(column["id"] == "opName" for column in table.get("cols", [])):
            for row in table_rows(table):
                listed[row["opName"]] = row
    wanted = {}
    for site in report["sites"]:
        for op in site["ops"]:
            name, _, op_type = op.partition(":")
            if op_type in INPUT_TYPES:
                wanted[name] = (site["count"], op_type)
    expect(set(listed) == set(wanted), f"input ops {sorted(listed)}, call sites {sorted(wanted)}")
    for name, (count, op_type) in wanted.items():
        row = listed.get(name, {})
        expect(row.get("count") == count, f"input op {name!r}: {row.get('count')} x, the report's {count}")
        category = INPUT_TYPES[op_type]
        expect(row.get("category") == category, f"input op {name!r}: category {row.get('category')!r}, not {category!r}")
    print(f"input_pipeline_analyzer: input ops {sorted(listed)}")


def percent(text):
    return float(text.rstrip("%"))


def check_overview(path, report):
    tables = convert(path, "overview_page")
    summary = next(t for t in tables if "host_tf_op_percent" in t.get("p", {}))
    step_table = next(
        t for t in tables if {"stepnum", "hostComputeTimeMs", "stepTimeMs"} <= {c["id"] for c in t["cols"]}
    )
    steps = table_rows(step_table)
    names = [s["stepnum"] for s in steps]
    wanted = [s["name"] for s in report["steps"]]
    # With more than five steps, xprof drops the first and the last.
    if len(wanted) > 5:
        wanted = wanted[1:-1]
    expect(names == wanted, f"overview steps {names}, the report's {wanted}")
    shares = [s["hostComputeTimeMs"] / s["stepTimeMs"] for s in steps if s["stepTimeMs"] > 0]
    expect(len(shares) == len(steps), "steps without time")
    # The median, so that one step the machine stalled in does not decide.
    median = statistics.median(shares) if shares else 0
    expect(median >= 0.9, f"host compute is {median:.1%} of a step (median), not most of it")
    tf_op = percent(summary["p"]["host_tf_op_percent"])
    expect(tf_op >= 50, f"framework ops hold {tf_op}% of the host's time")
    total = sum(s["stepTimeMs"] for s in steps)
    host = sum(s["hostComputeTimeMs"] for s in steps)
    print(
        f"overview_page: {len(steps)} steps ({names[0] if names else '-'} .. "
        f"{names[-1] if names else '-'}), host compute {host:.3f} of {total:.3f} ms "
        f"({host / total if total else 0:.1%}; median step {median:.1%}), "
        f"framework ops {tf_op}% of host time"
    )


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    logdir, trace_export = sys.argv[1], sys.argv[2]
    output = subprocess.run(
        [trace_export, "report", logdir, "--json", "--top", "0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    reports = json.loads(output)
    expect(len(reports) > 0, f"{logdir}: no profile")
    for report in reports:
        print(report["file"])
        check_op_stats(report["file"], report)
        check_overview(report["file"], report)
        check_input_pipeline(report["file"], report)
    if errors:
        print("\ncheck_op_stats: FAILED", file=sys.stderr)
        for error in errors:
            print(f"  {error}", file=sys.stderr)
        sys.exit(1)
    print("check_op_stats: OK")


if __name__ == "__main__":
    main()
