"""Corpora of any size: `charrnn prepare` speed, start-up time and peak memory
of training from a prepared directory and from a text file, and the training throughput
of a corpus read from disk against the same corpus in memory.

The script makes its own text, in three kinds, and deletes it afterwards:

- ``ascii``: English-like words, sentences and lines, pure ASCII (like the bundled Shakespeare);
- ``english``: the same with what modern English text has, about one word in 500 with a
  typographic quote, a dash or an accented letter (so almost every 4 MB chunk is not
  pure ASCII and takes the general path);
- ``cjk``: mostly CJK ideographs (3 bytes each in UTF-8) with CJK punctuation and about 5%
  emoji (4 bytes each).

For every size (``--sizes``, e.g. ``10M,200M,2G``) it measures, each in a fresh process:

- ``charrnn prepare`` of each kind: MB of input per second of wall time (command to
  exit, interpreter start-up and fsync included), per second of CPU time (user + system:
  what the machine's other users do not change much) and its peak RSS;
- ``charrnn train`` of an LSTM H=512 T=64 B=32 (the throughput benchmark's row 6:
  Adagrad, float32, ``--steps`` steps, a final evaluation of 10,000 characters (its chunks,
  and so its memory, are those of any longer one), checkpoint) from the prepared
  ``english`` directory and directly from the ``english`` text file: the time from the
  command to the end of the first step (polled from metrics.jsonl, written every step),
  the same less the first step itself, and the peak RSS (``getrusage(RUSAGE_CHILDREN)``
  of a wrapper).

The bundled 1 MB corpus (data/shakespeare_tiny.txt) is measured the same way first, as
the reference. Throughput, on the largest size: training steps (charrnn's step as users run it,
``harness.CharrnnTrainer``) from the prepared
directory (read from disk) and from the same indices in memory, alternating step by step
in one process, the ratio of the median step times; and the batch gather alone, the only
work that differs, from disk and from memory.

Timings on a shared machine are noisy; rates vary by ±20% from run to run.

Run from the repository root::

    python benchmarks/corpus.py --sizes 10M,200M,2G
    python benchmarks/corpus.py --sizes 10M --quick    # a smoke run (about a minute)
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as HN  # noqa: E402  (this folder: charrnn's step as users run it)

from charrnn import corpus as CO  # noqa: E402
from charrnn.runtime import tune_allocator  # noqa: E402

ROOT = HN.ROOT

TINY = ROOT / "data" / "shakespeare_tiny.txt"
BLOCK = 8 << 20  # text is generated in blocks of this many bytes, then repeated

WORDS = ("the of and to a in is it you that he was for on are with as I his they be at one have this "
         "from or had by word but what some we can out other were all there when up use your how said an "
         "each she which do their time if will way about many then them write would like so these her long "
         "make thing see him two has look more day could go come did number sound no most people my over "
         "know water than call first who may down side been now find any new work part take get place made "
         "live where after back little only round man year came show every good me give our under name very "
         "through just form sentence great think say help low line differ turn cause much mean before move "
         "right boy old too same tell does set three want air well also play small end put home read hand "
         "port large spell add even land here must big high such follow act why ask men change went light "
         "kind off need house picture try us again animal point mother world near build self earth father").split()
TYPOGRAPHIC = ["don’t", "“yes”", "—", "café", "naïve", "Zoë", "résumé", "it’s", "…", "façade"]


def parse_size(text):
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    text = text.strip().upper().rstrip("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def english_block(rng, typographic):
    """About BLOCK bytes of English-like text: Zipf-distributed words, sentences, lines."""
    n = BLOCK // 5
    ranks = np.arange(1, len(WORDS) + 1)
    p = 1.0 / ranks
    words = np.array(WORDS, dtype=object)[rng.choice(len(WORDS), n, p=p / p.sum())]
    if typographic:
        special = rng.random(n) < 1 / 500
        words[special] = np.array(TYPOGRAPHIC, dtype=object)[rng.integers(0, len(TYPOGRAPHIC), special.sum())]
    ends = rng.random(n)
    seps = np.where(ends < 0.06, ".\n", np.where(ends < 0.12, ". ", np.where(ends < 0.18, ", ", " ")))
    text = "".join(w + s for w, s in zip(words.tolist(), seps.tolist(), strict=True))
    return text.encode("utf-8")


def cjk_block(rng):
    """About BLOCK bytes of mostly CJK text with punctuation and about 5% emoji."""
    n = BLOCK // 3
    ideographs = 0x4E00 + rng.permutation(0x9FFF - 0x4E00)[:3500]
    ranks = np.arange(1, len(ideographs) + 1)
    p = 1.0 / ranks**0.8
    cps = ideographs[rng.choice(len(ideographs), n, p=p / p.sum())]
    kind = rng.random(n)
    cps = np.where(kind < 0.05, 0x1F300 + rng.integers(0, 0x150, n), cps)  # emoji
    cps = np.where((kind >= 0.05) & (kind < 0.10), np.array([0xFF0C, 0x3002, 0x3001])[rng.integers(0, 3, n)], cps)
    cps = np.where((kind >= 0.10) & (kind < 0.115), 10, cps)  # lines
    return cps.astype("<u4").tobytes().decode("utf-32-le").encode("utf-8")


def write_text(path, size, kind, seed=0):
    """A file of about ``size`` bytes of ``kind`` text, a generated block repeated."""
    rng = np.random.default_rng(seed)
    block = cjk_block(rng) if kind == "cjk" else english_block(rng, kind == "english")
    written = 0
    with open(path, "wb") as f:
        while written < size:
            part = block[:size - written].decode("utf-8", "ignore").encode("utf-8")  # whole characters
            if not part:
                break
            f.write(part)
            written += len(part)
    return written


WRAPPER = ("import resource, subprocess, sys\n"
           "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
           "sys.stderr.write(r.stderr[-2000:] if r.returncode else '')\n"
           "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
           "print(r.returncode, u.ru_maxrss, u.ru_utime + u.ru_stime)\n")


def charrnn(args, first_step_of=None):
    """Run `python -m charrnn ARGS` in a fresh process: (wall s, peak RSS MB, s to first
    step, CPU s).

    ``first_step_of``: a metrics.jsonl to poll; the time its first line appears is the end
    of the first training step as the user sees it.
    """
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "charrnn", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    first = None
    while p.poll() is None:
        if first is None and first_step_of is not None and os.path.exists(first_step_of) \
                and os.path.getsize(first_step_of) > 0:
            first = time.perf_counter() - t0
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    out, err = p.communicate()
    code, rss, cpu = out.split()[-3:]
    if int(code) != 0:
        raise SystemExit(f"charrnn {' '.join(map(str, args))} failed ({code}):\n{err}")
    return wall, int(rss) / 1024, first, float(cpu)


def train_args(data, run_dir, steps):
    """The throughput benchmark's row 6 settings, on ``data``."""
    return ["train", "--data", data, "--out", run_dir, "--steps", steps, "-q",
            "--set", "model.cell=lstm", "--set", "model.hidden_size=512", "--set", "model.dtype=float32",
            "--set", "optim.name=adagrad", "--set", "optim.lr=0.05", "--set", "optim.clip_value=5.0",
            "--set", "train.seq_length=64", "--set", "train.batch_size=32", "--set", f"train.steps={steps}",
            "--set", "train.max_minutes=null", "--set", "train.log_every=1", "--set", "train.sample_every=0",
            "--set", "train.checkpoint_every=0", "--set", "train.eval_every=0", "--set", "train.eval_chars=10000"]


def measure_training(data, work, steps):
    """Start-up: from the command to the end of the first step, and that less the first
    step itself (its ``elapsed_s``, timed from the start of the training loop): the time
    spent starting Python, reading the config and the corpus, and making the model."""
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    wall, rss, first, _ = charrnn(train_args(data, run_dir, steps), first_step_of=run_dir / "metrics.jsonl")
    with open(run_dir / "metrics.jsonl") as f:
        step1 = json.loads(f.readline())["elapsed_s"]
    shutil.rmtree(run_dir, ignore_errors=True)
    return dict(startup_s=first, first_step_s=step1, before_s=first - step1, wall_s=wall, rss_mb=rss)


def measure_prepare(text, out):
    shutil.rmtree(out, ignore_errors=True)
    size = os.path.getsize(text)
    wall, rss, _, cpu = charrnn(["prepare", text, "--out", out, "-q"])
    return dict(mb_s=size / 1e6 / wall, cpu_mb_s=size / 1e6 / cpu, wall_s=wall, cpu_s=cpu, rss_mb=rss)


def throughput(prep, steps):
    """Training from the prepared directory (read from disk) and from the same indices in
    memory, alternating step by step (disk, memory, disk, ...) so that both see the same
    disturbances: chars/s of each from the median step time, and their ratio. Also the
    batch gather alone (``Streams.batch``), the only thing that differs, timed over 500
    batches each."""
    tune_allocator()
    c = CO.open_corpus(str(prep))
    # charrnn's step as users run it (harness.CharrnnTrainer), at row 6's settings.
    sides = {name: HN.trainer(data, len(c.vocab), "lstm", 512, 64, 32, lr=0.05)
             for name, data in (("disk", c.train), ("memory", np.asarray(c.train)))}
    times = {name: [] for name in sides}
    for i in range(steps + 2):
        for name, trainer in sides.items():
            t = HN.timed(trainer.step)
            if i >= 2:  # two warm-up steps each
                times[name].append(t)
    gather = {}
    for name, trainer in sides.items():
        gather[name] = HN.timed(lambda s=trainer.streams: [s.batch(64 * k) for k in range(500)]) / 500
    rate = {name: 64 * 32 / statistics.median(t) for name, t in times.items()}
    return dict(disk=rate["disk"], memory=rate["memory"], ratio=rate["disk"] / rate["memory"],
                step_ms=1e3 * statistics.median(times["memory"]),
                gather_disk_us=1e6 * gather["disk"], gather_memory_us=1e6 * gather["memory"])


def fmt_size(n):
    return f"{n / 1e9:g} GB" if n >= 1e9 else f"{n / 1e6:g} MB"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10M,200M,2G", help="corpus sizes, e.g. 10M,200M,1G,2G")
    ap.add_argument("--kinds", default="ascii,english,cjk", help="text kinds to prepare")
    ap.add_argument("--direct-max", default="2G", help="train directly from a text file up to this size")
    ap.add_argument("--steps", type=int, default=5, help="training steps per start-up / memory run")
    ap.add_argument("--throughput-steps", type=int, default=30, help="training steps per side for the throughput")
    ap.add_argument("--dir", default=None, help="where to generate the data (default: a temporary directory)")
    ap.add_argument("--quick", action="store_true", help="3 steps, 3 throughput steps: a smoke run")
    ap.add_argument("--json", dest="json_path", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.throughput_steps = 3, 3
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    work = Path(tempfile.mkdtemp(prefix="charrnn-corpus-bench-", dir=args.dir))
    header = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "numpy": np.__version__,
        "command": " ".join(["python", "benchmarks/corpus.py"] + (argv if argv is not None else sys.argv[1:])),
        "training": f"LSTM H=512 T=64 B=32 float32 Adagrad, {args.steps} steps, final evaluation of 10,000 "
                    "characters, checkpoint (the throughput benchmark's row 6)",
    }
    rows, tp = [], None
    try:
        # The reference: the bundled 1 MB corpus, as text and prepared.
        print("reference: data/shakespeare_tiny.txt ...", file=sys.stderr, flush=True)
        ref = dict(size=os.path.getsize(TINY), label="1 MB (data/shakespeare_tiny.txt)")
        ref["prepare"] = {"ascii": measure_prepare(TINY, work / "tiny.prep")}
        ref["prepared"] = measure_training(work / "tiny.prep", work, args.steps)
        ref["direct"] = measure_training(TINY, work, args.steps)
        rows.append(ref)
        for i, size in enumerate(sizes):
            row = dict(size=size, label=fmt_size(size), prepare={})
            for kind in kinds:
                print(f"{fmt_size(size)} {kind}: generating, preparing ...", file=sys.stderr, flush=True)
                text = work / f"{kind}.txt"
                row.setdefault("bytes", {})[kind] = write_text(text, size, kind)
                os.sync()
                row["prepare"][kind] = measure_prepare(text, work / f"{kind}.prep")
                if kind != "english":
                    text.unlink()
                    shutil.rmtree(work / f"{kind}.prep")
            if "english" in kinds:
                print(f"{fmt_size(size)}: training from the prepared directory ...", file=sys.stderr, flush=True)
                row["prepared"] = measure_training(work / "english.prep", work, args.steps)
                if size <= parse_size(args.direct_max):
                    print(f"{fmt_size(size)}: training from the text file ...", file=sys.stderr, flush=True)
                    row["direct"] = measure_training(work / "english.txt", work, args.steps)
                if i == len(sizes) - 1:
                    print(f"{fmt_size(size)}: throughput, disk against memory ...", file=sys.stderr, flush=True)
                    tp = dict(size=fmt_size(size), **throughput(work / "english.prep", args.throughput_steps))
                (work / "english.txt").unlink()
                shutil.rmtree(work / "english.prep")
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the generated data is never left behind
    print(render(header, rows, kinds, tp))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"header": header, "rows": rows, "throughput": tp}, indent=2) + "\n")


def render(header, rows, kinds, tp):
    lines = ["# charrnn corpus benchmark", ""] + [f"- {k}: {v}" for k, v in header.items()] + [""]
    cols = " | ".join(f"prepare {k}: MB/s wall, CPU; RSS MB" for k in kinds)
    lines += [f"| corpus | {cols} | prepared: start-up s (less step 1) | prepared: peak RSS MB | "
              "text file: start-up s (less step 1) | text file: peak RSS MB |",
              "|---|" + "---:|" * (len(kinds) + 4)]
    for r in rows:
        prep = " | ".join(
            f"{r['prepare'][k]['mb_s']:,.0f}, {r['prepare'][k]['cpu_mb_s']:,.0f}; {r['prepare'][k]['rss_mb']:,.0f}"
            if k in r["prepare"] else "—"
            for k in kinds)
        p, d = r.get("prepared"), r.get("direct")
        lines.append(f"| {r['label']} | {prep} | {p['startup_s']:.2f} ({p['before_s']:.2f}) | {p['rss_mb']:,.0f} | "
                     + (f"{d['startup_s']:.2f} ({d['before_s']:.2f}) | {d['rss_mb']:,.0f} |" if d else "— | — |"))
    if tp:
        lines += ["", f"Throughput at {tp['size']}, LSTM H=512 T=64 B=32, alternating step by step: read from disk "
                  f"{tp['disk']:,.0f} chars/s, in memory {tp['memory']:,.0f} chars/s, ratio {tp['ratio']:.3f}. "
                  f"The batch gather alone: {tp['gather_disk_us']:.0f} µs from disk, {tp['gather_memory_us']:.0f} µs "
                  f"in memory, in a step of {tp['step_ms']:.0f} ms: "
                  f"{(tp['gather_disk_us'] - tp['gather_memory_us']) / 10 / tp['step_ms']:.2f}% of it."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
