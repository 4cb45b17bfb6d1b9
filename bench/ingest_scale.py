"""Ingest at scale: peak memory (RSS) and throughput of `mixstream ingest` for CSV and Parquet.

Writes CSV and Parquet files of planted float64 rows (16 columns) at several sizes, then ingests
each into a Zarr store in a fresh child interpreter and reads the child's peak RSS
(``ru_maxrss``) and its RSS after the imports, before the ingest. CSV is read by pyarrow's
streaming reader (``pyarrow.csv.open_csv``, 4 MiB blocks) and, for comparison, by the line
parser alone (``np.loadtxt`` over 65,536-line blocks, the fallback); Parquet by record batches.
Flat memory: the peak minus the baseline stays the same whatever the file size.

    python bench/ingest_scale.py                         # 32, 128, 512 MB
    python bench/ingest_scale.py --sizes-mb 16 64 --lines-up-to-mb 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D = 16
CHILD = r"""
import json, resource, sys, time
import mixstream.data.readers as readers
from mixstream.data.ingest import ingest
import zarr, numcodecs, pyarrow.csv, pyarrow.parquet  # imports before the baseline
readers.USE_ARROW = sys.argv[3] == "arrow"
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
base = rss_mb()
t0 = time.perf_counter()
ingest(sys.argv[1], sys.argv[2], chunk_rows=65536, shard_rows=262144)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "base_mb": base, "peak_mb": peak}))
"""


def write_files(folder: Path, size_mb: int) -> tuple[Path, Path, int]:
    """A CSV of about ``size_mb`` MB and a Parquet file of the same rows, written in blocks."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rows_per_block = 50_000
    rng = np.random.default_rng(size_mb)
    csv_path, pq_path = folder / f"rows_{size_mb}mb.csv", folder / f"rows_{size_mb}mb.parquet"
    names = [f"x{j}" for j in range(D)]
    schema = pa.schema([(n, pa.float64()) for n in names])
    n_rows = 0
    with pacsv.CSVWriter(csv_path, schema) as cw, pq.ParquetWriter(pq_path, schema) as pw:
        while csv_path.stat().st_size < size_mb * 1e6:
            X = rng.normal(size=(rows_per_block, D)).round(6) * 10.0
            table = pa.table({n: X[:, j] for j, n in enumerate(names)}, schema=schema)
            cw.write_table(table)
            pw.write_table(table, row_group_size=65_536)
            n_rows += rows_per_block
    return csv_path, pq_path, n_rows


def run_child(src: Path, dest: Path, mode: str) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(dest), mode],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--lines-up-to-mb", type=int, default=128, help="line parser sizes")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        for size in args.sizes_mb:
            t0 = time.perf_counter()
            csv_path, pq_path, n_rows = write_files(folder, size)
            mb = csv_path.stat().st_size / 1e6
            print(f"wrote {mb:.0f} MB CSV, {n_rows} rows in {time.perf_counter() - t0:.1f} s")
            runs = [("csv, pyarrow", csv_path, "arrow"), ("parquet", pq_path, "arrow")]
            if size <= args.lines_up_to_mb:
                runs.insert(1, ("csv, line parser", csv_path, "lines"))
            for label, src, mode in runs:
                dest = folder / f"{src.name}.{mode}.zarr"
                r = run_child(src, dest, mode)
                rows.append((size, n_rows, label, r, mb))
                subprocess.run(["rm", "-rf", str(dest)], check=True)
            csv_path.unlink()
            pq_path.unlink()
    print()
    head = (
        "| CSV size (MB) | rows | reader | seconds | CSV MB/s | RSS before (MB) | peak RSS (MB) |"
        " peak - before (MB) |"
    )
    print(head)
    print("|" + "---|" * 8)
    for _size, n_rows, label, r, mb in rows:
        print(
            f"| {mb:.0f} | {n_rows:,} | {label} | {r['seconds']:.2f} | {mb / r['seconds']:.0f} |"
            f" {r['base_mb']:.0f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['base_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
