"""Checks the oracle's --json summary of an example's logdir against what the example did."""
import json
import sys

kind, path = sys.argv[1], sys.argv[2]
summary = json.load(open(path))
errors = []


def expect(condition, message):
    if not condition:
        errors.append(message)


expect(summary["ok"], f"oracle reported errors: {summary['errors']}")
xplanes = summary["xplanes"]
expect(len(xplanes) == 1, f"expected one profile, found {len(xplanes)}")

def host_plane_with_ten_train_steps():
    """The host plane, checked for ten `Train` steps (xprof drops the first and the last of
    more than five from the overview page)."""
    plane = next(p for p in xplanes[0]["planes"] if p["name"] == "/host:CPU")
    steps = xplanes[0]["tools"]["overview_page"]["steps"]
    names = [name for name, _ in steps]
    expect(names == [f"Train {n}" for n in range(1, 9)], f"overview steps: {names}")
    expect(all(ms > 0 for _, ms in steps), f"step times: {steps}")
    expect(plane["root_events"] == 10, f"root events: {plane['root_events']}")
    return plane


if kind == "train":
    plane = host_plane_with_ten_train_steps()
    loader = [line for line in plane["lines"] if line["name"] == "data-loader"]
    expect(loader and loader[0]["events"] > 0, "no data-loader events in the profile")
    threads = xplanes[0]["tools"]["trace_viewer"]["threads"]
    expect("data-loader" in threads, f"trace viewer threads: {threads}")
    # The example installs TracedAllocator: xprof converts its heap events.
    tools = xplanes[0]["tools"]
    expect(tools.get("memory_profile", {}).get("bytes", 0) > 0, f"memory_profile: {tools.get('memory_profile')}")

if kind == "tracing_app":
    # Ten `Train` spans with a step_num field.
    plane = host_plane_with_ten_train_steps()
    lines = {line["name"]: line["events"] for line in plane["lines"]}
    expect(lines.get("data-loader", 0) == 10, f"data-loader events: {lines}")
    workers = [line for line in plane["lines"] if line["name"] == "worker"]
    expect(workers and sum(line["events"] for line in workers) > 0, f"runtime worker lines: {lines}")
if kind == "serve":
    # A capture of the running serve example: steps of its training loop, its loader thread,
    # none of the profiler server's own threads.
    plane = next(p for p in xplanes[0]["planes"] if p["name"] == "/host:CPU")
    steps = xplanes[0]["tools"]["overview_page"]["steps"]
    expect(steps and all(name.startswith("Train ") and ms > 0 for name, ms in steps), f"overview steps: {steps[:5]}")
    names = [line["name"] for line in plane["lines"]]
    loader = [line for line in plane["lines"] if line["name"] == "data-loader"]
    expect(loader and loader[0]["events"] > 0, f"no data-loader events: {names}")
    expect(not any(n.startswith("trace-profiler-") for n in names), f"server threads captured: {names}")

if kind == "summaries":
    run = summary["runs"].get(".", {})
    scalars = run.get("scalars", {})
    # The example runs five traced steps (0..4) and writes a loss per step.
    for tag in ("loss", "profile/step_time_ms"):
        steps = [step for step, _ in scalars.get(tag, [])]
        expect(steps == list(range(5)), f"scalar {tag!r} steps: {steps}")
    nodes = run.get("graph_nodes", 0)
    expect(nodes == 7, f"graph nodes: {nodes} (one per call path that ran)")
    metadata = run.get("run_metadata", {}).get("my_trace", {})
    expect(metadata.get("plugin") == "graph_run_metadata", f"run metadata: {metadata}")
    expect(metadata.get("node_stats") == nodes, f"node stats {metadata.get('node_stats')} for {nodes} nodes")
    expect(len(summary["profile_runs"]) == 1, f"profile runs: {summary['profile_runs']}")

if errors:
    print(f"{kind}: FAILED", *errors, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"{kind}: oracle summary as expected")
