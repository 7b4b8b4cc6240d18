"""What the server counts, written in Prometheus's text exposition format (`GET /metrics`).

    metrics = Metrics()
    metrics.request("/v1/completions", 200, seconds=0.8)
    metrics.tokens("gpt", 64)
    metrics.batch("gpt", 8)
    metrics.render({"gpt": 3})            # the text, with each model's queue depth

Counters and histograms only grow; the server reads the queue depths when it renders. Thread-safe (the decoding
threads report batch sizes while the event loop counts requests).
"""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # seconds
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # rows decoded together


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)  # observations <= each bound (not cumulative; summed when rendered)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        self.count += 1
        self.sum += value

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{{{labels}}} {self.sum:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)  # (endpoint, status) -> count
        self.latency: dict[str, Histogram] = {}  # endpoint -> seconds
        self.generated: dict[str, int] = defaultdict(int)  # model -> tokens
        self.batches: dict[str, Histogram] = {}  # model -> rows per decoding step

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[endpoint, status] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def tokens(self, model: str, count: int) -> None:
        with self._lock:
            self.generated[model] += count

    def batch(self, model: str, rows: int) -> None:
        with self._lock:
            self.batches.setdefault(model, Histogram(BATCH_BUCKETS)).observe(rows)

    def render(self, queue_depths: dict[str, int]) -> str:
        with self._lock:
            out = [
                "# HELP tn_requests_total HTTP requests answered, by endpoint and status.",
                "# TYPE tn_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self.requests.items()):
                out.append(f'tn_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            out += [
                "# HELP tn_request_duration_seconds Time from a request's arrival to its last byte.",
                "# TYPE tn_request_duration_seconds histogram",
            ]
            for endpoint, hist in sorted(self.latency.items()):
                out += hist.lines("tn_request_duration_seconds", f'endpoint="{endpoint}"')
            out += [
                "# HELP tn_generated_tokens_total Tokens generated, by model.",
                "# TYPE tn_generated_tokens_total counter",
            ]
            for model, n in sorted(self.generated.items()):
                out.append(f'tn_generated_tokens_total{{model="{model}"}} {n}')
            out += [
                "# HELP tn_queue_depth Generation requests waiting for a place in their model's batch.",
                "# TYPE tn_queue_depth gauge",
            ]
            for model, n in sorted(queue_depths.items()):
                out.append(f'tn_queue_depth{{model="{model}"}} {n}')
            out += [
                "# HELP tn_batch_size Rows decoded together in one forward pass, by model.",
                "# TYPE tn_batch_size histogram",
            ]
            for model, hist in sorted(self.batches.items()):
                out += hist.lines("tn_batch_size", f'model="{model}"')
        return "\n".join(out) + "\n"
