#!/usr/bin/env python3
"""fdatasync cost after a 4 KiB pwrite into fallocated, zero-filled and sparse files (docs/design.md, "Segments").

Usage: scripts/fsync-preallocation.py [DIR]  (default: the current directory)"""
import os, sys, time
def run(path, mode, n=1500, size=4096):
    fd = os.open(path, os.O_RDWR|os.O_CREAT|os.O_TRUNC, 0o644)
    total = 64<<20
    if mode == 'fallocate':
        os.posix_fallocate(fd, 0, total)
    elif mode == 'zero':
        buf = b'\0' * (1<<20)
        for i in range(64): os.pwrite(fd, buf, i<<20)
        os.fsync(fd)
    elif mode == 'sparse':
        os.ftruncate(fd, total)
    os.fsync(fd)
    data = b'x'*size
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        a = time.perf_counter()
        os.pwrite(fd, data, i*size)
        os.fdatasync(fd)
        lat.append(time.perf_counter()-a)
    el = time.perf_counter()-t0
    lat.sort()
    os.close(fd); os.unlink(path)
    print(f"{mode:10s} {n/el:8.0f} syncs/s  p50={lat[len(lat)//2]*1e6:.0f}us p99={lat[int(len(lat)*.99)]*1e6:.0f}us")
for r in range(2):
    for m in ['fallocate','zero','sparse']:
        run(os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", "fsync-preallocation.bin"), m)
