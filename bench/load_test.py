"""Classroom load test (bounded): python -m bench.load_test [--clients 30] [--questions 3] [--soak-seconds 0]
                                                            [--client http|gradio_client]

Starts `python dashboard.py` on a free localhost port (a separate process, so its memory can be read), starts a
training run through /train_start, then N concurrent clients each ask Q questions through /generate.
--client http (default) speaks Gradio's documented HTTP API (POST /gradio_api/call/generate, then read the event
stream), one session per client, like a browser; it costs the 2-core test machine almost nothing, as students'
own laptops would. --client gradio_client uses the Python client, which here costs about 40 ms of CPU per
question on the same 2 cores as the server.
Reports p50/p95 latency, errors and how far training advanced meanwhile, twice: every question different (the
distinct burst), then five popular questions asked by everyone at once (the repeated burst: greedy answers are
computed once and shared); with --soak-seconds, repeats chats and
training start/stop cycles for that long and reports the server's memory (RSS) at the start and the end.
The dashboard's training speed alone (steps 100-150) is compared with the CLI's, run just before and just after.
Results go to bench/load_results.json."""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from gradio_client import Client

from gpt_mini.config import ROOT
from gpt_mini.data import FIXED_QUESTIONS, read_jsonl
from ui.app import free_port, wait_until_up


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


TEACHER = uuid.uuid4().hex  # the server runs in teacher mode, as on a class Space: only this script trains


def start_server(port: int):
    proc = subprocess.Popen([sys.executable, "dashboard.py", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "TEACHER_PASSWORD": TEACHER},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return proc, wait_until_up(f"http://127.0.0.1:{port}/", timeout=60)
    except RuntimeError:
        proc.kill()
        raise SystemExit("dashboard did not start") from None


def cli_tokens_per_s(steps: int = 150) -> float:
    """The CLI's own training speed here: tok/s in its log at the last eval (steps 100-150), for comparison."""
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-m", "gpt_mini.train", "--set", f"training.max_steps={steps}",
                              "--set", "training.eval_interval=50", "--set", f"save.dir={d}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=900)
    rates = re.findall(r"\| (\d+) tok/s \|", out.stdout)
    if not rates:
        raise SystemExit(f"the CLI training run printed no tok/s (exit {out.returncode}): {out.stderr[-300:]}")
    return float(rates[-1])


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class HttpClient:
    """Gradio's HTTP API with nothing but the standard library: one session, one question at a time."""
    DEFAULTS = [0.0, 0, 1.0, 1.0, 128, "", "default-fp32", True]  # /generate's other parameters, in order

    def __init__(self, url: str):
        self.url, self.session = url, uuid.uuid4().hex[:11]

    def predict(self, prompt: str, api_name: str = "/generate"):
        return self.call(api_name, [prompt] + self.DEFAULTS)

    def call(self, api_name: str, data: list):
        body = json.dumps({"data": data, "session_hash": self.session}).encode()
        request = urllib.request.Request(f"{self.url}gradio_api/call{api_name}", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            event_id = json.load(r)["event_id"]
        event = None
        with urllib.request.urlopen(f"{self.url}gradio_api/call{api_name}/{event_id}", timeout=60) as r:
            for line in r:
                line = line.decode("utf-8").strip()
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    data = json.loads(line[5:])
                    if event == "error":
                        raise RuntimeError(data)
                    return data[0]
        raise RuntimeError("stream ended without an answer")


def connect(url: str, n: int, kind: str) -> list:
    """n clients (sessions), connected in parallel; connecting is not part of any timing. Each client opens its
    session with one light request, as a student's browser does when the page loads: Gradio builds a session's
    state (~20 ms of the server's CPU per session) on that session's first request, not on a question asked later."""
    out = [None] * n

    def one(i):
        out[i] = HttpClient(url) if kind == "http" else Client(url, verbose=False)
        if kind == "http":
            out[i].call("/train_status", [])
        else:
            out[i].predict(api_name="/train_status")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


def burst(clients: list, prompts, questions: int, on_ready=None, offset: int = 0):
    """All clients ask at the same moment, each its questions one after another; latencies and errors."""
    latencies, errors, lock = [], [], threading.Lock()
    ready = threading.Barrier(len(clients), action=on_ready)

    def one_client(i):
        ready.wait()
        for j in range(questions):
            prompt = prompts[(offset + i * questions + j) % len(prompts)]
            t = time.perf_counter()
            try:
                answer = clients[i].predict(prompt, api_name="/generate")
                ok = isinstance(answer, str) and answer.strip()
            except Exception as e:  # noqa: BLE001 - counted, not raised
                ok, answer = False, str(e)
            with lock:
                latencies.append(time.perf_counter() - t)
                if not ok:
                    errors.append(f"{prompt}: {answer!r}"[:200])

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(len(clients))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return latencies, errors


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clients", type=int, default=30)
    p.add_argument("--questions", type=int, default=3)
    p.add_argument("--soak-seconds", type=float, default=0)
    p.add_argument("--client", choices=["http", "gradio_client"], default="http")
    p.add_argument("--out", default=str(ROOT / "bench" / "load_results.json"))
    args = p.parse_args()
    rows = read_jsonl(ROOT / "data" / "train.jsonl") + read_jsonl(ROOT / "data" / "val.jsonl")
    prompts = [r["prompt"] for r in rows][: args.clients * args.questions]
    # then the class asks what everyone asks: the two fixed questions and three more, each many times at once
    popular = list(FIXED_QUESTIONS) + [r["prompt"] for r in rows[-3:]]
    result = {"clients": args.clients, "questions": args.questions, "client": args.client, "cores": os.cpu_count()}
    cli_before = cli_tokens_per_s()  # the CLI before and after the server: the dashboard's speed is compared
    proc, url = start_server(free_port())  # with the CLI measured around it, same steps, same tok/s window
    try:
        admin = Client(url, verbose=False)
        admin.predict(eval_interval=50, teacher_password=TEACHER, api_name="/train_start")  # the lesson's run
        while admin.predict(api_name="/train_status")["step"] < 152:
            time.sleep(3)  # seldom: each poll costs the server some CPU; past step 151 the eval at 150 is over
        quiet = admin.predict(api_name="/train_status")
        result["dashboard_quiet_tokens_per_s"] = quiet["tokens_per_s"]
        print(f"dashboard training alone: {quiet['tokens_per_s']:.0f} tok/s (CLI before: {cli_before:.0f})",
              flush=True)
        start = {}

        def on_ready():  # all clients connected: the timed part begins
            start.update(step=admin.predict(api_name="/train_status")["step"], t=time.perf_counter())

        clients = connect(url, args.clients, args.client)  # the class: these sessions ask all questions below
        for kind, asked in (("distinct", prompts), ("repeated", popular)):
            latencies, errors = burst(clients, asked, args.questions, on_ready)
            status = admin.predict(api_name="/train_status")
            result[kind] = dict(requests=len(latencies), distinct_questions=len(set(asked)), errors=len(errors),
                                error_examples=errors[:5], p50_s=statistics.median(latencies),
                                p95_s=percentile(latencies, 0.95), max_s=max(latencies),
                                burst_seconds=time.perf_counter() - start["t"], train_state=status["state"],
                                train_steps_during_burst=status["step"] - start["step"])
            r = result[kind]
            print(f"{kind}: {len(latencies)} requests ({r['distinct_questions']} different questions) from "
                  f"{args.clients} clients: p50 {r['p50_s']:.2f}s, p95 {r['p95_s']:.2f}s, max {r['max_s']:.2f}s, "
                  f"errors {len(errors)}; training advanced {r['train_steps_during_burst']} steps "
                  f"({status['state']})", flush=True)
        admin.predict(teacher_password=TEACHER, api_name="/train_stop")
        if args.soak_seconds > 0:  # the same class keeps asking, 4 students at a time, while runs start and stop
            rss, soak_errors, soak_requests = [rss_mb(proc.pid)], 0, 0
            end, cycles = time.time() + args.soak_seconds, 0
            while time.time() < end:
                admin.predict(eval_interval=20, teacher_password=TEACHER, api_name="/train_start")
                group = [clients[(4 * cycles + k) % len(clients)] for k in range(4)]
                lat, err = burst(group, prompts, 3, offset=12 * cycles)
                soak_requests, soak_errors = soak_requests + len(lat), soak_errors + len(err)
                time.sleep(5)
                admin.predict(teacher_password=TEACHER, api_name="/train_stop")
                cycles += 1
                rss.append(rss_mb(proc.pid))
                print(f"  soak cycle {cycles} ({time.time() - end + args.soak_seconds:.0f} s): RSS {rss[-1]:.0f} MB",
                      flush=True)
            result.update(soak_requests=soak_requests, soak_errors=soak_errors, soak_seconds=args.soak_seconds,
                          soak_cycles=cycles, rss_start_mb=rss[0],
                          rss_end_mb=rss[-1], rss_max_mb=max(rss))
            print(f"soak: {cycles} cycles, RSS {rss[0]:.0f} MB -> {rss[-1]:.0f} MB (max {max(rss):.0f})")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    cli_after = cli_tokens_per_s()
    result.update(cli_tokens_per_s=[cli_before, cli_after],
                  dashboard_vs_cli=result["dashboard_quiet_tokens_per_s"] / statistics.mean([cli_before, cli_after]))
    print(f"CLI training: {cli_before:.0f} / {cli_after:.0f} tok/s; dashboard/CLI = {result['dashboard_vs_cli']:.2f}")
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0 if all(result.get(kind, {}).get("errors", 1) == 0 for kind in ("distinct", "repeated")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
