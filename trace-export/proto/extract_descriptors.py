"""Extracts the protobuf schemas that trace-export's hand-written messages are checked against.

The messages in `src/proto/tensorboard.rs` and `src/proto/xplane.rs` are written by hand
(no protoc at build time). Their tests compare them with the schemas of the programs that
read our files, taken from those programs themselves as serialized `FileDescriptorProto`s:

* `tests/data/tensorboard_descriptors.pb`: a `google.protobuf.FileDescriptorSet` holding
  TensorBoard's own compat protos (`tensorboard/compat/proto/*.proto`, proto package
  `tensorboard`), from the Python package `tensorboard` 2.21.0. The roots are the files
  `tensorboard.rs` mirrors (event, summary, tensor, tensor_shape, types, graph, node_def,
  attr_value, versions, config for `RunMetadata`, step_stats); every file they import
  follows, each file after the files it imports. Each file's bytes are exactly the
  serialized descriptor its `*_pb2` module was generated with (`DESCRIPTOR.serialized_pb`).
* `tests/data/xplane_descriptor.pb`: one `FileDescriptorProto`,
  `tsl/profiler/protobuf/xplane.proto` (package `tensorflow.profiler`), from the Python
  package `xprof` 2.24.2. xprof ships no `xplane_pb2` module; the descriptor is embedded,
  as protobuf's C++ code generator embeds every file's descriptor, in the converter library
  `xprof/convert/profiler_plugin_c_api.so`. It is cut out of that library: the bytes that
  start with the file's name and read as a descriptor whose re-serialization gives the same
  bytes. This is the schema xprof's converter was compiled with.

Run it with the Python of the oracle's virtual environment, which has exactly these
versions installed (the oracle, `../shared/oracle/check` from the workspace root as
`.ci/run` calls it, creates it there; `$TRACE_ORACLE_VENV` may name
another place):

    ~/.cache/trace-oracle/venv/bin/python trace-export/proto/extract_descriptors.py

It writes both files under `trace-export/tests/data/`. With `--check` it writes nothing and
exits with status 1 if the committed files differ from what the packages give (CI runs
this). `--out DIR` writes or checks the files in `DIR` instead. Other package versions are
refused unless `--any-version` is given, since the committed files record those versions.
"""

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import sys

from google.protobuf import descriptor_pb2

VERSIONS = {"tensorboard": "2.21.0", "xprof": "2.24.2"}

# The files whose messages tensorboard.rs mirrors; what they import comes along.
TENSORBOARD_ROOTS = [
    "event",
    "summary",
    "tensor",
    "tensor_shape",
    "types",
    "graph",
    "node_def",
    "attr_value",
    "versions",
    "config",
    "step_stats",
]

XPLANE_FILE = "tsl/profiler/protobuf/xplane.proto"

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, os.pardir, "tests", "data")


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data, at):
    value = 0
    for shift in range(0, 64, 7):
        if at >= len(data):
            return None, at
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
    return None, at


def check_versions(any_version):
    for package, wanted in VERSIONS.items():
        found = importlib.metadata.version(package)
        if found != wanted and not any_version:
            sys.exit(
                f"{package} {found} is installed, the committed descriptors come from "
                f"{wanted}; use the oracle's venv or pass --any-version"
            )


# ---------------------------------------------------------------------------------------------
# TensorBoard: the descriptors its _pb2 modules were generated with


def tensorboard_descriptor_set():
    """A FileDescriptorSet of the root files and their imports, imports first."""
    modules = {}

    def module_of(proto_name):
        # tensorboard/compat/proto/foo.proto -> tensorboard.compat.proto.foo_pb2
        return importlib.import_module(proto_name[: -len(".proto")].replace("/", ".") + "_pb2")

    ordered = []

    def visit(file_descriptor):
        if file_descriptor.name in modules:
            return
        modules[file_descriptor.name] = file_descriptor
        for dependency in file_descriptor.dependencies:
            visit(dependency)
        ordered.append(file_descriptor)

    for root in TENSORBOARD_ROOTS:
        visit(module_of(f"tensorboard/compat/proto/{root}.proto").DESCRIPTOR)

    out = bytearray()
    for file_descriptor in ordered:
        if not file_descriptor.name.startswith("tensorboard/compat/proto/"):
            sys.exit(f"unexpected import outside TensorBoard's protos: {file_descriptor.name}")
        serialized = file_descriptor.serialized_pb
        parsed = descriptor_pb2.FileDescriptorProto.FromString(serialized)
        assert parsed.name == file_descriptor.name, file_descriptor.name
        assert parsed.package == "tensorboard", file_descriptor.name
        # FileDescriptorSet.file is field 1, length-delimited.
        out += b"\x0a" + varint(len(serialized)) + serialized
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# xprof: the descriptor embedded in its converter library

# FileDescriptorProto's fields and their wire types (0 varint, 2 length-delimited); the
# repeated ones may occur more than once. A serializer writes them by increasing number.
FDP_WIRE_TYPES = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 2, 8: 2, 9: 2, 10: 0, 11: 0, 12: 2, 14: 0}
FDP_REPEATED = {3, 4, 5, 6, 7, 10, 11}


def descriptor_extent(data, start):
    """Where the FileDescriptorProto starting at `start` ends: the first byte that cannot
    continue it (a field it does not have, a wrong wire type, a field out of order or a
    second occurrence of a singular field)."""
    at = start
    last = 0
    while at < len(data):
        key, after_key = read_varint(data, at)
        if key is None:
            break
        number, wire_type = key >> 3, key & 7
        if FDP_WIRE_TYPES.get(number) != wire_type:
            break
        if number < last or (number == last and number not in FDP_REPEATED):
            break
        if wire_type == 0:
            _, end = read_varint(data, after_key)
            if _ is None:
                break
        else:
            length, body = read_varint(data, after_key)
            if length is None or body + length > len(data):
                break
            end = body + length
        last = number
        at = end
    return at


def xplane_descriptor():
    spec = importlib.util.find_spec("xprof")
    library = os.path.join(
        spec.submodule_search_locations[0], "convert", "profiler_plugin_c_api.so"
    )
    with open(library, "rb") as f:
        data = f.read()
    name = XPLANE_FILE.encode()
    needle = b"\x0a" + varint(len(name)) + name
    found = set()
    at = data.find(needle)
    while at >= 0:
        candidate = data[at : descriptor_extent(data, at)]
        try:
            parsed = descriptor_pb2.FileDescriptorProto.FromString(candidate)
        except Exception:  # the name inside some other data: not a descriptor
            parsed = None
        if (
            parsed is not None
            and parsed.name == XPLANE_FILE
            and parsed.syntax == "proto3"
            and not parsed.HasField("edition")
            and any(m.name == "XSpace" for m in parsed.message_type)
            # Canonical: exactly the bytes of this descriptor and nothing after them.
            and parsed.SerializeToString(deterministic=True) == candidate
        ):
            found.add(candidate)
        at = data.find(needle, at + 1)
    if len(found) != 1:
        sys.exit(f"expected one descriptor of {XPLANE_FILE} in {library}, found {len(found)}")
    return found.pop()


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="directory of the files")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--any-version", action="store_true", help="accept other versions")
    args = parser.parse_args()
    check_versions(args.any_version)

    files = {
        "tensorboard_descriptors.pb": tensorboard_descriptor_set(),
        "xplane_descriptor.pb": xplane_descriptor(),
    }
    stale = []
    for file_name, data in files.items():
        path = os.path.join(args.out, file_name)
        if args.check:
            try:
                with open(path, "rb") as f:
                    same = f.read() == data
            except FileNotFoundError:
                same = False
            if not same:
                stale.append(path)
        else:
            with open(path, "wb") as f:
                f.write(data)
            print(f"wrote {os.path.normpath(path)} ({len(data)} bytes)")
    if stale:
        for path in stale:
            print(f"{os.path.normpath(path)} differs from what the installed packages give",
                  file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
