#!/usr/bin/env python3
"""Which node owns which of chorus-bench's rooms: cluster/placement.cpp's rendezvous hash, in Python.

bench/cluster.sh uses it to report how a run's rooms fell on the nodes, and to pick a room prefix whose rooms
all belong to one chosen node (the owner-versus-relay runs). The hash is checked against the pinned values of
tests/cluster/placement_test.cpp on every use, so a change there cannot go unnoticed here.

usage: cluster_rooms.py owners PREFIX ROOMS NODE...       prints "NODE=COUNT ..." over rooms PREFIX0..
       cluster_rooms.py prefix BASE ROOMS WHERE NODE...   prints the first BASE<k>- whose ROOMS rooms are
                                                          all owned by node WHERE; or, WHERE = balanced,
                                                          spread over NODE... as evenly as they can be; or,
                                                          WHERE = round-robin, room r owned by NODE r mod N
"""
import sys

MASK = (1 << 64) - 1
SEED = 0x63686F7275732D31  # "chorus-1"
GOLDEN = 0x9E3779B97F4A7C15


def mix(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def hash_bytes(text, h):
    b = text.encode()
    h ^= (len(b) * GOLDEN) & MASK
    i = 0
    while i + 8 <= len(b):
        h = (mix(h ^ int.from_bytes(b[i:i + 8], "little")) + GOLDEN) & MASK
        i += 8
    if i < len(b):
        h = mix(h ^ int.from_bytes(b[i:], "little") ^ (((len(b) - i) << 59) & MASK))
    return mix(h ^ GOLDEN)


def weight(room, node):
    return hash_bytes(node, hash_bytes(room, SEED))


def owner(room, nodes):
    # Highest weight; equal weights (never seen in practice) go to the smaller id, as in placement.cpp.
    return min(nodes, key=lambda n: (-weight(room, n), n))


def self_check():
    three = [f"node-{i}" for i in range(1, 4)]
    ten = [f"node-{i}" for i in range(1, 11)]
    pinned = [
        (weight("", ""), 0x420845F60E0239E1),
        (weight("lobby", "node-1"), 0xC206A3B7236ABA84),
        (weight("a-rather-long-room-identifier-0001", "node-2"), 0x93EA70874772F431),
        (owner("lobby", three), "node-1"), (owner("general", three), "node-2"),
        (owner("random", three), "node-3"), (owner("lobby", ten), "node-5"),
        (owner("general", ten), "node-6"), (owner("random", ten), "node-6"),
        (owner("room-12345", ten), "node-2"),
    ]
    for got, want in pinned:
        if got != want:
            sys.exit(f"cluster_rooms.py: placement differs from cluster/placement.cpp ({got!r} != {want!r})")


def main(argv):
    self_check()
    if len(argv) >= 4 and argv[0] == "owners":
        prefix, rooms, nodes = argv[1], int(argv[2]), argv[3:]
        counts = {n: 0 for n in nodes}
        for r in range(rooms):
            counts[owner(f"{prefix}{r}", nodes)] += 1
        print(" ".join(f"{n}={c}" for n, c in counts.items()))
    elif len(argv) >= 5 and argv[0] == "prefix":
        base, rooms, where, nodes = argv[1], int(argv[2]), argv[3], argv[4:]
        for k in range(1_000_000):
            prefix = f"{base}{k}-"
            owners = [owner(f"{prefix}{r}", nodes) for r in range(rooms)]
            if where == "balanced":
                counts = [owners.count(n) for n in nodes]
                found = max(counts) - min(counts) <= 1
            elif where == "round-robin":
                found = all(o == nodes[r % len(nodes)] for r, o in enumerate(owners))
            else:
                found = all(o == where for o in owners)
            if found:
                print(prefix)
                return
        sys.exit("cluster_rooms.py: no prefix found")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
