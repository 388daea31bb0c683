#!/usr/bin/env python3
"""TUI vs headless decode rate on the same probes/seed/max-tokens, plus per-thread CPU of the
TUI process while it streams (sampled from /proc/<pid>/task/*/stat). Runs A/B pairs in
alternating order to spread machine noise over both sides; as root both sides run at nice -15
so other work on the machine disturbs them less.

    scripts/measure_tui.py target/release/lem-tui [PAIRS=2] [MAX_TOKENS=256]

Prints one JSON line per run: tokens generated, decode tok/s per candidate (the engine's own
summary figure), and for the TUI the CPU % of each thread while it streamed ("main (UI loop)"
is the workbench's select! loop; "llama.cpp-worke" is the model thread and its OpenMP team)."""
import json, os, re, shutil, subprocess, sys, tempfile, time

BIN = sys.argv[1]
PAIRS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
MAXTOK = sys.argv[3] if len(sys.argv) > 3 else "256"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NICE = ["nice", "-n", "-15"] if os.geteuid() == 0 else []
PROBES = [
    {"id": "M01", "domain": "Geography", "prompt": "What is the capital of France, and why did it become the capital?"},
    {"id": "M02", "domain": "Ethics", "prompt": "Why is kindness important? Answer in a few paragraphs."},
    {"id": "M03", "domain": "Science", "prompt": "Explain how photosynthesis works to a curious teenager."},
    {"id": "M04", "domain": "History", "prompt": "Describe the causes of the industrial revolution."},
]
HZ = os.sysconf("SC_CLK_TCK")

def root():
    d = tempfile.mkdtemp(prefix="lemtui-measure-")
    shutil.copytree(f"{REPO}/.core/ai", f"{d}/.core/ai")
    json.dump(PROBES, open(f"{d}/probes.json", "w"))
    os.makedirs(f"{d}/config")
    return d

ARGS = ["distill", "--probes", "probes.json", "--runs", "2", "--max-tokens", MAXTOK, "--seed", "7",
        "--threads", "2", "--min-score", "1", "--no-store", "--output", "lesson.jsonl"]

def rate_from(text):
    m = re.search(r"(\d+) generated, (\d+) tok/s", text) or re.search(r"(\d+) tokens\s*\ndecode: (\d+) tok/s", text)
    return (int(m.group(1)), int(m.group(2))) if m else None

def headless():
    d = root()
    t0 = time.time()
    p = subprocess.run(NICE + [BIN] + ARGS + ["--headless"], cwd=d, capture_output=True, text=True,
                       env={**os.environ, "LEM_TUI_LOG": f"{d}/log", "LEM_TUI_CONFIG_DIR": f"{d}/config"})
    wall = time.time() - t0
    r = rate_from(p.stderr)
    return {"tokens": r[0] if r else None, "tok_s": r[1] if r else None, "wall": wall, "rc": p.returncode}

def threads(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            s = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        f = s[s.rindex(")") + 2:].split()
        out[int(tid)] = (name, int(f[11]) + int(f[12]))
    return out

def tui():
    d = root()
    sock = f"m{os.getpid()}"
    tm = lambda *a: subprocess.run(["tmux", "-L", sock, *a], capture_output=True, text=True)
    script = (f"cd {d}\nexport LEM_TUI_LOG={d}/log LEM_TUI_CONFIG_DIR={d}/config TERM=xterm-256color\n"
              f"{' '.join(NICE)} {BIN} {' '.join(ARGS)} --mode auto\necho LEMTUI-EXIT=$?\nsleep 60\n")
    open(f"{d}/run.sh", "w").write(script)
    tm("new-session", "-d", "-s", "m", "-x", "120", "-y", "40", f"sh {d}/run.sh")
    pid = None
    t0 = time.time()
    while pid is None and time.time() - t0 < 60:
        r = subprocess.run(["pgrep", "-f", f"^{BIN} distill --probes"], capture_output=True, text=True)
        pids = [int(x) for x in r.stdout.split()]
        pid = pids[0] if pids else None
        time.sleep(0.05)
    # Wait for streaming to begin, then sample threads until the run finishes.
    while "Stream ·" not in tm("capture-pane", "-p", "-t", "m").stdout and time.time() - t0 < 120:
        time.sleep(0.05)
    first = threads(pid); tw0 = time.time()
    last = first; tw1 = tw0
    while True:
        scr = tm("capture-pane", "-p", "-t", "m").stdout
        if "run finished" in scr or "LEMTUI-EXIT" in scr:
            break
        try:
            last = threads(pid); tw1 = time.time()
        except FileNotFoundError:
            break
        time.sleep(0.25)
    tm("send-keys", "-t", "m", "q")
    while "LEMTUI-EXIT" not in tm("capture-pane", "-p", "-t", "m", "-S", "-50").stdout and time.time() - t0 < 600:
        time.sleep(0.1)
    scr = tm("capture-pane", "-p", "-t", "m", "-S", "-50").stdout
    tm("kill-server")
    r = rate_from(scr)
    span = max(tw1 - tw0, 1e-9)
    by_name = {}
    for tid, (name, ticks) in last.items():
        d0 = first.get(tid, (name, 0))[1]
        key = "main (UI loop)" if tid == pid else name
        by_name[key] = by_name.get(key, 0) + (ticks - d0) / HZ / span * 100
    return {"tokens": r[0] if r else None, "tok_s": r[1] if r else None, "sampled_s": round(span, 1),
            "cpu_pct_by_thread": {k: round(v, 1) for k, v in sorted(by_name.items())},
            "cpu_pct_total": round(sum(by_name.values()), 1), "screen_tail": scr.strip().splitlines()[-4:]}

results = []
for i in range(PAIRS):
    for kind in (("headless", headless), ("tui", tui)) if i % 2 == 0 else (("tui", tui), ("headless", headless)):
        r = kind[1](); r["kind"] = kind[0]; results.append(r)
        print(json.dumps(r), flush=True)
