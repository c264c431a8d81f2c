"""The structure the code must keep, checked from the sources and the built objects:

- layers in one order: base (err, hex, uuid) <- contracts <- runtime (services/common) <- svc
  (services/common/svc) <- daemons; a file includes headers of its own layer or lower ones only,
  and a daemon never includes another daemon's header;
- no include cycle between headers;
- no call cycle between the object files of the project: if a.o uses a symbol b.o defines, b.o
  uses nothing a.o defines, directly or round about (two files that call each other are one idea
  split in two, or two ideas tangled).

Run by ctest as unit.layers with PETSTORE_SOURCE_DIR and PETSTORE_BUILD_DIR set."""
import os
import re
import subprocess

SOURCE = os.environ.get("PETSTORE_SOURCE_DIR",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("PETSTORE_BUILD_DIR")

BASE = {"err.c", "err.h", "err_codes.def", "hex.c", "hex.h", "uuid.c", "uuid.h"}
DAEMON_DIRS = ["services/storefront", "services/inventory", "services/payment",
               "services/audit", "services/dlq", "saga", "outbox"]
RANK = {"base": 0, "contracts": 1, "runtime": 2, "svc": 3, "daemon": 4}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(rel):
    """(layer, daemon directory or None) of a project source file."""
    d, name = os.path.split(rel)
    if d == "services/common" and name in BASE:
        return "base", None
    if rel.startswith("contracts/"):
        return "contracts", None
    if d == "services/common/svc":
        return "svc", None
    if d == "services/common":
        return "runtime", None
    for dd in DAEMON_DIRS:
        if rel.startswith(dd + "/"):
            return "daemon", dd
    return None, None


def sources():
    """Every C source and header of the product (tests are not part of the layering)."""
    out = {}
    for top in ["contracts", "services", "saga", "outbox"]:
        for root, _dirs, files in os.walk(os.path.join(SOURCE, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    path = os.path.join(root, f)
                    out[os.path.relpath(path, SOURCE)] = path
    return out


def resolve(rel, name, by_name):
    """The project file an #include "name" of rel means: beside it first, then by file name."""
    local = os.path.normpath(os.path.join(os.path.dirname(rel), name))
    if local in by_name["paths"]:
        return local
    hits = by_name["names"].get(os.path.basename(name), [])
    return hits[0] if len(hits) == 1 else None


def include_graph():
    files = sources()
    by_name = {"paths": set(files), "names": {}}
    for rel in files:
        by_name["names"].setdefault(os.path.basename(rel), []).append(rel)
    graph = {}
    for rel, path in files.items():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        graph[rel] = [t for t in (resolve(rel, n, by_name) for n in INCLUDE.findall(text)) if t]
    return graph


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_every_include_respects_the_layer_order():
    wrong = []
    for rel, targets in include_graph().items():
        layer, daemon = layer_of(rel)
        if layer is None:
            continue
        for t in targets:
            tlayer, tdaemon = layer_of(t)
            if tlayer is None:
                continue
            if RANK[tlayer] > RANK[layer]:
                wrong.append(f"{rel} ({layer}) includes {t} ({tlayer})")
            elif tlayer == "daemon" and tdaemon != daemon:
                wrong.append(f"{rel} includes another daemon's header {t}")
    assert wrong == []


def test_no_header_include_cycle():
    graph = {k: [t for t in v if t.endswith(".h")] for k, v in include_graph().items()
             if k.endswith(".h")}
    assert cycles(graph) == []


def objects():
    """Object files of the product by source path. CMake puts the object of DIR/x.c of a target
    declared in DIR at BUILD/DIR/CMakeFiles/<target>.dir/x.c.o; generated sources (embedded
    migrations and pages) have no file in the source tree and are left out, and so are tests."""
    out = {}
    for root, _dirs, files in os.walk(BUILD):
        if "/CMakeFiles/" not in root + "/":
            continue
        top, rest = (root + "/").split("/CMakeFiles/", 1)
        if ".dir" not in rest:
            continue
        subdir = rest.split(".dir", 1)[1].lstrip("/")
        for f in files:
            if not f.endswith(".c.o"):
                continue
            rel = os.path.normpath(os.path.join(os.path.relpath(top, BUILD), subdir, f[:-2]))
            if rel.startswith("tests/") or not os.path.exists(os.path.join(SOURCE, rel)):
                continue
            out.setdefault(rel, os.path.join(root, f))
    return out


def symbols(path):
    res = subprocess.run(["nm", "--defined-only", "-g", path], capture_output=True, text=True,
                         check=True)
    defined = {line.split()[-1] for line in res.stdout.splitlines() if line.strip()}
    res = subprocess.run(["nm", "-u", path], capture_output=True, text=True, check=True)
    used = {line.split()[-1] for line in res.stdout.splitlines() if line.strip()}
    return defined, used


def test_no_call_cycle_between_object_files():
    assert BUILD, "PETSTORE_BUILD_DIR is not set"
    objs = objects()
    assert len(objs) > 40, f"found only {len(objs)} object files under {BUILD}"
    table = {rel: symbols(path) for rel, path in objs.items()}
    owner = {}
    for rel, (defined, _used) in table.items():
        for s in defined:
            owner.setdefault(s, rel)
    graph = {rel: sorted({owner[s] for s in used if s in owner and owner[s] != rel})
             for rel, (_defined, used) in table.items()}
    assert cycles(graph) == []
