#!/usr/bin/env python3
"""lem-tui's endpoint pool over a fleet of K inference servers (issues 12 and 13).

Starts K servers (llama-server by default; any OpenAI-compatible server through
--server-cmd), one per GPU where there are several (CUDA_VISIBLE_DEVICES = i mod GPUs) and all
on the one GPU otherwise, waits until each answers, then runs

    lem-tui distill --headless --probes SET --runs 8 --endpoint URL1 ... --endpoint URLK

and reports, per fleet size: wall time, tokens, aggregate tok/s (tokens / wall of the whole
client process, start-up included, and lem-tui's own figure over its run), each endpoint's
share of the candidates, and the client's own CPU time (user + system, from wait4) per
generated token, so that the pool is never the bottleneck unnoticed.

`--in-flight 1,4` runs each fleet size with lem-tui keeping 1 and then 4 probes in flight
(`--probes-in-flight`): one probe's best-of-8 is at most 8 streams over the whole fleet.

`--kill-one K` adds a run over K servers in which server 0 is SIGKILLed --kill-after seconds
into the run (with requests in flight on it), and checks that nothing was lost or written twice: exit code 0, every probe decided once
(kept + skipped = probes), the lesson file's lines whole JSON objects, one per kept probe,
unique by prompt, and the killed endpoint reported down with the others finishing the run.

  python3 scripts/fleet.py --lem ./gpu/lem-tui --server-bin /tmp/llama/build/bin/llama-server \\
      --model /tmp/gemma3-270m-random-q4_k_m.gguf --ks 1,2,4 --probes demo --json fleet.json

Probe sets (--probes, comma-separated): `demo` (20), any set or file lem-tui takes, or `gen:500`
(500 generated probes, the 100 LEM seeds each asked five ways, written to --work); `SET@T`
runs that set with T tokens per candidate instead of --max-tokens.
"""

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# The repository: scripts/.. here, gpu/scripts/../.. where scripts/gpu-fleet carried this file.
ROOT = Path(__file__).resolve().parent.parent
if ROOT.name == "gpu" and (ROOT.parent / "assets").is_dir():
    ROOT = ROOT.parent
T0 = time.monotonic()


def say(*a):
    print(f"[fleet +{time.monotonic() - T0:.0f}s]", *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gpus():
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


class Server:
    def __init__(self, i, a, work, gpu_list):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / f"server-{i}-{self.port}.log"
        cmd = a.server_cmd.format(bin=a.server_bin, model=a.model, port=self.port, slots=a.slots,
                                  ctx=a.slots * a.ctx_per_slot)
        env = dict(os.environ)
        if gpu_list:
            env["CUDA_VISIBLE_DEVICES"] = gpu_list[i % len(gpu_list)]
        self.gpu = env.get("CUDA_VISIBLE_DEVICES", "")
        self.proc = subprocess.Popen(shlex.split(cmd), stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)

    def ready(self):
        for path in ("/health", "/v1/models"):
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as r:
                    if r.status == 200:
                        return True
            except Exception:  # noqa: BLE001 - not up yet
                pass
        return False

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_fleet(k, a, work):
    gl = gpus() if a.one_per_gpu else []
    servers = [Server(i, a, work, gl) for i in range(k)]
    deadline = time.monotonic() + a.start_timeout
    for s in servers:
        while not s.ready():
            if s.proc.poll() is not None or time.monotonic() > deadline:
                tail = s.log.read_text(errors="replace")[-3000:]
                for x in servers:
                    x.stop()
                sys.exit(f"server {s.url} did not come up (exit {s.proc.poll()}):\n{tail}")
            time.sleep(0.25)
    say(f"{k} server(s) up: " + ", ".join(f"{s.url} (GPU {s.gpu or '-'})" for s in servers))
    return servers


def gen_probes(n, out):
    seeds = []
    for f in sorted((ROOT / "assets/probes").glob("P*-P*.json")):
        seeds += json.loads(f.read_text())
    asks = ["", "Answer briefly. ", "Explain your reasoning step by step. ", "Answer as a checklist. ",
            "Answer for a non-expert. "]
    probes = []
    for i in range(n):
        p = seeds[i % len(seeds)]
        k = i // len(seeds)
        probes.append({"id": f"{p['id']}_V{k}", "domain": p.get("domain", ""),
                       "prompt": asks[k % len(asks)] + p["prompt"] + ("" if k < len(asks) else f" (variant {k})")})
    out.write_text(json.dumps(probes, indent=0))
    return str(out)


def distill(label, servers, a, work, probes, kill=None, max_tokens=None, in_flight=1):
    max_tokens = max_tokens or a.max_tokens
    out = work / f"{label}.jsonl"
    for f in (out, work / f"{label}.db"):
        f.unlink(missing_ok=True)
    cmd = [a.lem, "distill", "--headless", "--probes", probes, "--runs", str(a.runs),
           "--max-tokens", str(max_tokens), "--seed", "1", "--min-score", str(a.min_score),
           "--output", str(out), "--concurrency", str(a.concurrency), "--endpoint-wait", "60",
           "--probes-in-flight", str(in_flight)]
    if a.lem_model:
        cmd += ["--model", a.lem_model]
    for s in servers:
        cmd += ["--endpoint", s.url + "/v1"]
    env = dict(os.environ, LEM_TUI_STORE=str(work / f"{label}.db"), LEM_TUI_LOG=str(work / f"{label}.log"))
    say(f"{label}: {len(servers)} endpoint(s), probes {probes}, best-of-{a.runs}, {max_tokens} tokens, "
        f"{in_flight} probe(s) in flight")
    err = open(work / f"{label}.err", "w")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=a.root)
    killed, reaped = None, None
    if kill is not None:
        # SIGKILL one server mid-run: the pool must finish its candidates on the others.
        while time.monotonic() - t0 < a.kill_after:
            reaped = os.wait4(p.pid, os.WNOHANG)
            if reaped[0]:
                break
            reaped = None
            time.sleep(0.05)
        if reaped is None:
            victim = servers[kill]
            os.killpg(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait()
            killed = {"url": victim.url, "at_s": time.monotonic() - t0}
            say(f"{label}: killed {victim.url} at {killed['at_s']:.1f} s")
    _, status, ru = reaped or os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err.close()
    text = (work / f"{label}.err").read_text(errors="replace")

    def num(pat, cast=float):
        m = re.search(pat, text, re.M)
        return cast(m.group(1)) if m else None

    tokens = num(r"^Tokens:\s+(\d+) generated", int) or 0
    eps = [{"url": m[0], "state": m[1], "candidates": int(m[2]), "tokens": int(m[3]), "failed": int(m[4])}
           for m in re.findall(r"^Endpoint: (\S+) (\S+): (\d+) candidates, (\d+) tokens, (\d+) failed", text, re.M)]
    total = sum(e["candidates"] for e in eps) or 1
    for e in eps:
        e["share"] = e["candidates"] / total
    cpu = ru.ru_utime + ru.ru_stime
    r = {
        "label": label, "servers": len(servers), "probes_in_flight": in_flight, "exit": p.returncode,
        "probes_set": probes,
        "probes": num(r"^Probes:\s+(\d+)", int), "kept": num(r"^Kept:\s+(\d+)", int),
        "skipped": num(r"^Skipped:\s+(\d+)", int), "runs": a.runs, "max_tokens": max_tokens,
        "wall_s": wall, "tokens": tokens, "aggregate_tok_s": tokens / wall if wall else 0,
        "lem_overall_tok_s": num(r"^Overall:\s+([\d.]+) tok/s"), "client_cpu_s": cpu,
        "client_cpu_us_per_token": cpu / tokens * 1e6 if tokens else None,
        "client_max_rss_mib": ru.ru_maxrss / 1024, "endpoints": eps, "killed": killed,
    }
    say(f"{label}: exit {p.returncode}, wall {wall:.1f} s, {tokens} tokens, {r['aggregate_tok_s']:.0f} tok/s, "
        f"client CPU {cpu:.1f} s ({r['client_cpu_us_per_token'] or 0:.1f} us/token), shares "
        + " ".join(f"{e['share']:.2f}" for e in eps))
    if p.returncode != 0:
        say(f"{label}: lem-tui failed:\n{text[-3000:]}")
    return r, out


def check_kill(r, out, probes_total):
    """Nothing lost, nothing written twice: the checks of the kill-one run."""
    problems = []
    if r["exit"] != 0:
        problems.append(f"exit code {r['exit']}")
    if r["killed"] is None:
        problems.append("the run ended before the kill")
    decided = (r["kept"] or 0) + (r["skipped"] or 0)
    if r["probes"] != probes_total or decided != probes_total:
        problems.append(f"{decided} of {probes_total} probes decided (summary: {r['probes']} probes)")
    prompts, bad = [], 0
    for n, line in enumerate(out.read_text().splitlines(), 1) if out.exists() else []:
        try:
            ex = json.loads(line)
            prompts.append(next(m["content"] for m in ex["messages"] if m["role"] == "user"))
        except (ValueError, KeyError, StopIteration):
            bad += 1
            problems.append(f"{out}:{n}: not a whole lesson line")
    if len(prompts) != (r["kept"] or 0):
        problems.append(f"{len(prompts)} lesson lines for {r['kept']} kept probes")
    if len(set(prompts)) != len(prompts):
        problems.append(f"{len(prompts) - len(set(prompts))} probes written twice")
    down = [e for e in r["endpoints"] if r["killed"] and e["url"].startswith(r["killed"]["url"])]
    if r["killed"] and (not down or down[0]["state"] == "up"):
        problems.append("the killed endpoint is not reported down")
    others = [e for e in r["endpoints"] if not down or e is not down[0]]
    if not any(e["candidates"] for e in others):
        problems.append("no other endpoint finished candidates")
    return {"ok": not problems, "problems": problems, "lesson_lines": len(prompts),
            "unique_prompts": len(set(prompts)), "decided": decided, "probes": probes_total}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lem", default=str(ROOT / "target/release/lem-tui"))
    ap.add_argument("--lem-model", default="", help="lem-tui --model (sampling, template; default its own)")
    ap.add_argument("--root", default=str(ROOT), help="lem-tui's working folder (its .core/ai)")
    ap.add_argument("--server-bin", default="llama-server")
    ap.add_argument("--server-cmd", default="{bin} -m {model} --host 127.0.0.1 --port {port} -np {slots} -c {ctx} "
                    "-ngl 999 -fa on --no-webui -b 2048 -ub 512",
                    help="server command; {bin} {model} {port} {slots} {ctx} are filled in")
    ap.add_argument("--model", default="")
    ap.add_argument("--slots", type=int, default=16, help="parallel slots per server")
    ap.add_argument("--ctx-per-slot", type=int, default=1024)
    ap.add_argument("--one-per-gpu", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--ks", default="1,2,4", help="fleet sizes")
    ap.add_argument("--probes", default="demo", help="comma-separated sets; gen:500 generates 500")
    ap.add_argument("--runs", type=int, default=8, help="best-of-N")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--min-score", type=float, default=0.01)
    ap.add_argument("--concurrency", type=int, default=0, help="requests per endpoint (default: --slots)")
    ap.add_argument("--in-flight", default="1",
                    help="lem-tui --probes-in-flight values to run at each fleet size (comma-separated)")
    ap.add_argument("--kill-one", type=int, default=0, help="also a run over this many servers, one killed")
    ap.add_argument("--kill-after", type=float, default=5.0, help="seconds into the kill-one run")
    ap.add_argument("--kill-probes", default="", help="probe set of the kill-one run (default: the first)")
    ap.add_argument("--start-timeout", type=float, default=300)
    ap.add_argument("--work", default="/tmp/fleet-work")
    ap.add_argument("--json", help="write the results here (rewritten after every run)")
    a = ap.parse_args()
    a.concurrency = a.concurrency or a.slots
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sets = []  # (name, lem-tui --probes, max tokens)
    for s in a.probes.split(","):
        s, _, tokens = s.partition("@")
        tokens = int(tokens) if tokens else None
        if s.startswith("gen:"):
            n = int(s[4:])
            sets.append((f"gen{n}", gen_probes(n, work / f"probes-gen{n}.json"), tokens))
        else:
            sets.append((s, s, tokens))
    in_flight = [int(x) for x in a.in_flight.split(",") if x]
    report = {"model": a.model, "server_cmd": a.server_cmd, "slots": a.slots, "gpus": gpus(), "runs": []}

    def save():
        if a.json:
            Path(a.json).write_text(json.dumps(report, indent=1))

    for k in [int(x) for x in a.ks.split(",") if x]:
        servers = start_fleet(k, a, work)
        try:
            for name, probes, tokens in sets:
                for w in in_flight:
                    label = f"k{k}-{name}" + (f"-w{w}" if w != 1 else "")
                    r, _ = distill(label, servers, a, work, probes, max_tokens=tokens, in_flight=w)
                    report["runs"].append(r)
                    save()
        finally:
            for s in servers:
                s.stop()
    if a.kill_one:
        name, probes, tokens = next((s for s in sets if s[0] == a.kill_probes), sets[0])
        servers = start_fleet(a.kill_one, a, work)
        try:
            r, out = distill(f"kill-one-k{a.kill_one}-{name}", servers, a, work, probes, kill=0, max_tokens=tokens,
                             in_flight=in_flight[-1])
        finally:
            for s in servers:
                s.stop()
        total = r["probes"] if r["probes"] is not None else -1
        if name.startswith("gen"):
            total = int(name[3:])
        elif name == "demo":
            total = 20
        r["check"] = check_kill(r, out, total)
        report["kill_one"] = r
        save()
        say("kill-one check: " + ("ok" if r["check"]["ok"] else "FAILED: " + "; ".join(r["check"]["problems"])))
    save()
    print(json.dumps(report))
    if a.kill_one and not report["kill_one"]["check"]["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
