"""The attention explorer (`explore`): the page's data packs the model's weights, and in a real headless Chromium
the numbers the page shows (heatmap under the pointer, head-view lines, the heads table, next tokens, class
probabilities) equal `attention_maps` within 1e-3; the page fetches nothing; exports, keys and the live mode work.

The browser tests need Debian's chromium and chromium-driver (.ci/run installs them); without them they skip,
except under CI, where a missing browser is a failure."""

import base64
import io
import json
import math
import os
import re
import shutil
import threading
import time
import xml.etree.ElementTree as ET

import httpx
import numpy as np
import pytest
import torch

from transformer_networks import cli
from transformer_networks.explorer import explorer_data, head_statistics, serve_explorer, write_explorer
from transformer_networks.inference import answer_questions, attention_maps, classify_lines, load_for, translate_lines

SMALL = ["--preset", "tiny", "--set", "d_model=48", "--set", "n_heads=3", "--set", "n_layers=2", "--set", "d_ff=64"]
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()
LM_TEXT = "the quick brown fox"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A word reverser (translation), a character LM and a two-class classifier: 2 layers x 3 heads each."""
    tmp = tmp_path_factory.mktemp("explore")
    pairs = [(a, b) for a in WORDS for b in WORDS[:5]]
    (tmp / "mt.tsv").write_text("".join(f"{a} {b}\t{b} {a}\n" for a, b in pairs), encoding="utf-8")
    (tmp / "lm.txt").write_text("the quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    rows = "".join(f"{w} {w}\t{'pos' if i % 2 else 'neg'}\n" for i, w in enumerate(WORDS))
    (tmp / "cls.tsv").write_text("text\tlabel\n" + rows * 5, encoding="utf-8")
    argvs = {
        "mt": ["translation", "--data", tmp / "mt.tsv", "--tokenizer", "word"],
        "lm": ["lm", "--data", tmp / "lm.txt", "--tokenizer", "char", "--block-size", "32"],
        "cls": ["classification", "--data", tmp / "cls.tsv", "--tokenizer", "word"],
    }
    for name, argv in argvs.items():
        common = ["--max-steps", "20", "--eval-every", "20", "--device", "cpu", "--quiet", "--out", tmp / name]
        assert cli.main(["train", *map(str, argv), *map(str, common), *SMALL]) == 0
    return tmp


def unpack(layer: str, n_heads: int, n_queries: int, n_keys: int) -> np.ndarray:
    """The page's packed layer back to dense (H, Tq, Tk) weights, as the page's script reads it."""
    words = np.frombuffer(base64.b64decode(layer), dtype="<u2")
    rows = n_heads * n_queries
    counts, rest = words[:rows].astype(np.int64), words[rows:]
    n = int(counts.sum())
    cols, vals = rest[:n], rest[n : 2 * n]
    assert len(rest) == 2 * n
    dense = np.zeros((rows, n_keys))
    dense[np.repeat(np.arange(rows), counts), cols] = vals / 1000
    return dense.reshape(n_heads, n_queries, n_keys)


# --- the data ---------------------------------------------------------------------------------------------------


def test_packed_weights_are_the_models_within_1e3_and_the_threshold_keeps_the_budget(runs):
    ck = load_for("lm", runs / "lm")
    maps = attention_maps(ck, LM_TEXT, continuation=8)
    data = explorer_data(ck, LM_TEXT, continuation=8)
    assert data["min_weight"] == 0.001 and data["outputs"]["prompt_tokens"] == len(LM_TEXT)
    kind = data["kinds"]["decoder"]
    assert kind["queries"] == maps.queries["decoder"] and len(kind["queries"]) == len(LM_TEXT) + 8
    for layer, packed in enumerate(kind["layers"]):
        dense = unpack(packed, 3, len(kind["queries"]), len(kind["keys"]))
        np.testing.assert_allclose(dense, maps.weights["decoder"][layer].numpy(), atol=1e-3, rtol=0)
    # A budget of 200 weights makes the page drop more: every weight left out is under the threshold it names.
    small = explorer_data(ck, LM_TEXT, continuation=8, max_weights=200)
    assert small["min_weight"] > 0.001
    for layer, packed in enumerate(small["kinds"]["decoder"]["layers"]):
        dense = unpack(packed, 3, len(kind["queries"]), len(kind["keys"]))
        true = maps.weights["decoder"][layer].numpy()
        kept = dense > 0
        assert (true[~kept] < small["min_weight"] + 5e-4).all()
        np.testing.assert_allclose(dense[kept], true[kept], atol=5e-4, rtol=0)


def test_head_statistics_are_entropy_distance_and_previous_token_weight():
    w = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.25, 0.25, 0.5]])[None, None]
    stats = head_statistics(w, self_attention=True)
    torch.testing.assert_close(stats["entropy"][0, 0], torch.tensor([0.0, math.log(2), 1.5 * math.log(2)]))
    torch.testing.assert_close(stats["distance"][0, 0], torch.tensor([0.0, 0.5, 0.75]))
    torch.testing.assert_close(stats["previous"][0, 0], torch.tensor([0.0, 0.5, 0.25]))
    assert set(head_statistics(w, self_attention=False)) == {"entropy"}


def test_causal_prefix_weights_do_not_depend_on_the_continuation(runs):
    # What makes the page's stepping honest: the first n rows and columns of the weights with a continuation are
    # the weights of those n tokens alone.
    ck = load_for("lm", runs / "lm")
    long, short = attention_maps(ck, LM_TEXT, continuation=8), attention_maps(ck, LM_TEXT)
    n = len(LM_TEXT)
    torch.testing.assert_close(long.weights["decoder"][..., :n, :n], short.weights["decoder"], atol=1e-5, rtol=0)


# --- the command ------------------------------------------------------------------------------------------------


def run_cli(monkeypatch, capsys, argv):
    monkeypatch.setattr(cli, "_stdin", lambda: io.BytesIO(b""))
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_explore_writes_one_self_contained_file_and_keeps_an_existing_one(runs, tmp_path, monkeypatch, capsys):
    page = tmp_path / "mt.html"
    code, out, err = run_cli(monkeypatch, capsys, ["explore", runs / "mt", "--text", "alpha bravo", "--out", page])
    assert code == 0 and out.startswith(str(page)), err
    html = page.read_text(encoding="utf-8")
    # No network: nothing is loaded from anywhere (the only address is SVG's namespace name), and the page's
    # Content-Security-Policy forbids it.
    assert "default-src 'none'" in html
    assert {a for a in re.findall(r"https?://[^\s\"'`<>]+", html)} == {"http://www.w3.org/2000/svg"}
    page.write_text("mine", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, ["explore", runs / "mt", "--text", "alpha", "--out", page])
    assert code == 2 and "exists; pass --overwrite" in err and page.read_text(encoding="utf-8") == "mine"
    for argv, message in (
        (["--out", page, "--overwrite"], "give it with --text"),
        (["--text", "x", "--target", "y", "--out", page, "--overwrite"], "--target is for translation"),
        (["--text", "x", "--min-weight", "2", "--out", page, "--overwrite"], "--min-weight 2"),
        (["--text", "x", "--continuation", "-1", "--out", page, "--overwrite"], "--continuation -1"),
        (["--text", "x", "--out", "/proc/nowhere/page.html"], "--out /proc/nowhere/page.html: cannot write"),
    ):
        code, _, err = run_cli(monkeypatch, capsys, ["explore", runs / "lm", *argv])
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


# --- in a browser -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("CI runs the explorer's browser tests: .ci/run installs chromium and chromium-driver")
        pytest.skip("needs Debian's chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,2400"):
        options.add_argument(arg)
    options.binary_location = chromium
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    d = webdriver.Chrome(service=Service(driver), options=options)
    d.downloads = downloads
    yield d
    d.quit()


def by(d, css):
    from selenium.webdriver.common.by import By

    return d.find_element(By.CSS_SELECTOR, css)


def all_of(d, css):
    from selenium.webdriver.common.by import By

    return d.find_elements(By.CSS_SELECTOR, css)


def open_page(d, path):
    d.get(path.as_uri())
    wait(lambda: d.execute_script("return document.body.dataset.rendered"))


def wait(condition, timeout=10.0):
    end = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)
    return value


def hover_cell(d, i, j):
    """Point at the centre of the heatmap's cell (query i, key j); the readout's value."""
    from selenium.webdriver import ActionChains

    canvas = by(d, "#heatmap")
    cell, margin = float(canvas.get_attribute("data-cell")), float(canvas.get_attribute("data-margin"))
    x, y = margin + (j + 0.5) * cell, margin + (i + 0.5) * cell
    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(d).move_to_element_with_offset(canvas, int(x - w / 2), int(y - h / 2)).perform()
    readout = by(d, "#readout")
    assert (readout.get_attribute("data-query"), readout.get_attribute("data-key")) == (str(i), str(j))
    return float(by(d, "#readout-value").text)


def test_lm_page_shows_the_models_weights_statistics_and_next_tokens(runs, browser, tmp_path):
    d, ck = browser, load_for("lm", runs / "lm")
    page = write_explorer(ck, LM_TEXT, tmp_path / "lm.html", continuation=6)
    maps = attention_maps(ck, LM_TEXT, continuation=6)
    weights, n = maps.weights["decoder"], len(maps.queries["decoder"])
    open_page(d, page)
    assert d.execute_script("return performance.getEntriesByType('resource').length") == 0  # fetched nothing
    by(d, '[data-view="heatmap"]').click()
    by(d, '[data-layer="1"]').click()
    by(d, '[data-head="2"]').click()
    assert by(d, '#layers [data-layer="1"]').get_attribute("aria-pressed") == "true"
    for i, j in ((0, 0), (5, 2), (n - 1, 0), (n - 1, n - 1), (7, 7), (3, 9)):
        assert abs(hover_cell(d, i, j) - float(weights[1, 2, i, j])) <= 1e-3, (i, j)
    # The next tokens shown after the last hovered query (3) are the model's top 5 there.
    probs, ids = maps.logits[3].softmax(-1).topk(5)
    shown = [float(x.text) for x in all_of(d, "#next-tokens .num")]
    np.testing.assert_allclose(shown, probs.numpy(), atol=1e-3)
    # The heads table: entropy, distance, previous-token weight of every head, averaged over the queries.
    by(d, '[data-view="table"]').click()
    rows = all_of(d, "#heads-table tbody tr")
    assert len(rows) == 6
    for row in rows:
        layer, head = int(row.get_attribute("data-layer")), int(row.get_attribute("data-head"))
        p = weights[layer, head].double()
        expected = {
            "entropy": float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean()),
            "distance": float(sum((p[q, k] * abs(q - k)) for q in range(n) for k in range(n)) / n),
            "previous": float(sum(p[q, q - 1] for q in range(1, n)) / (n - 1)),
        }
        for col, value in expected.items():
            assert abs(float(by(row, f'td[data-col="{col}"]').text) - value) <= 1e-3, (layer, head, col)
    # Sorting by entropy orders the rows by it.
    by(d, 'th[data-col="entropy"]').click()
    column = [float(td.text) for td in all_of(d, '#heads-table td[data-col="entropy"]')]
    assert column == sorted(column)
    # Stepping back through the continuation shows fewer tokens: two steps back, n - 2 queries and keys.
    by(d, '[data-view="heatmap"]').click()
    by(d, "body").send_keys("[[")
    assert by(d, "#heatmap").get_attribute("data-queries") == str(n - 2)
    assert "+ 4 of 6 greedy continuation" in by(d, "#step-label").text


def test_translation_page_head_view_lines_translation_and_model_view(runs, browser, tmp_path):
    from selenium.webdriver import ActionChains

    d, ck = browser, load_for("translation", runs / "mt")
    page = write_explorer(ck, "alpha bravo", tmp_path / "mt.html")
    maps = attention_maps(ck, "alpha bravo")
    open_page(d, page)
    assert by(d, '[data-kind="cross"]').get_attribute("aria-pressed") == "true"  # a translator opens on cross
    expected = translate_lines(ck, ["alpha bravo"], num_beams=1)[0][0].text
    assert by(d, "#translation").text == expected
    by(d, '[data-kind="encoder"]').click()
    by(d, '[data-view="head"]').click()
    by(d, '#heads [data-head="1"]').click()  # heads 0 and 1 now both drawn
    ActionChains(d).move_to_element(by(d, 'text[data-side="q"][data-index="1"]')).perform()
    lines = all_of(d, "#headview line")
    assert {ln.get_attribute("data-head") for ln in lines} == {"0", "1"}
    weights = maps.weights["encoder"][0]
    for ln in lines:
        h, q, k = (int(ln.get_attribute(f"data-{a}")) for a in ("head", "query", "key"))
        assert q == 1 and abs(float(ln.get_attribute("data-weight")) - float(weights[h, q, k])) <= 1e-3
    drawn = {(int(ln.get_attribute("data-head")), int(ln.get_attribute("data-key"))) for ln in lines}
    assert drawn == {(h, k) for h in (0, 1) for k in range(weights.shape[-1]) if weights[h, 1, k] >= 0.0105}
    # The model view: a click on layer 1, head 2 opens that head's heatmap; the keys move between layers and heads.
    by(d, '[data-view="model"]').click()
    by(d, '#modelview canvas[data-layer="1"][data-head="2"]').click()
    assert by(d, '[data-view="heatmap"]').get_attribute("aria-pressed") == "true"
    assert by(d, '#heads [data-head="2"]').get_attribute("aria-pressed") == "true"
    by(d, "body").send_keys("\ue012\ue013")  # arrow left, arrow up: head 1, layer 0
    assert by(d, '#layers [data-layer="0"]').get_attribute("aria-pressed") == "true"
    assert by(d, '#heads [data-head="1"]').get_attribute("aria-pressed") == "true"
    value = hover_cell(d, 0, 1)
    assert abs(value - float(maps.weights["encoder"][0, 1, 0, 1])) <= 1e-3


def test_classifier_page_shows_class_probabilities_and_exports_png_and_svg(runs, browser, tmp_path):
    d, ck = browser, load_for("classification", runs / "cls")
    page = write_explorer(ck, "golf golf", tmp_path / "cls.html")
    open_page(d, page)
    probs = classify_lines(ck, ["golf golf"])[0]
    shown = {row.get_attribute("data-token"): float(by(row, ".num").text) for row in all_of(d, "#classes .bar")}
    assert shown.keys() == probs.keys() and all(abs(shown[k] - probs[k]) <= 1e-3 for k in probs)
    for view in ("head", "heatmap", "model", "table"):
        by(d, f'[data-view="{view}"]').click()
        for fmt in ("svg", "png"):
            by(d, f"#export-{fmt}").click()
            new = d.downloads / f"attention-encoder-{view}-layer0-head0.{fmt}"
            data = wait(lambda p=new: p.exists() and p.read_bytes())
            if fmt == "png":
                assert data[:8] == b"\x89PNG\r\n\x1a\n", new
            else:
                assert data.lstrip().startswith(b"<svg") and b"</svg>" in data, new
                ET.fromstring(data)  # well-formed


def test_live_mode_runs_the_model_on_typed_text(runs, browser):
    d, ck = browser, load_for("translation", runs / "mt")
    server = serve_explorer(ck, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        url = f"http://{host}:{port}/"
        d.get(url)
        assert "Type a text" in by(d, "#view").text
        assert by(d, "#live-target-row").is_displayed() and not by(d, "#live-context-row").is_displayed()
        by(d, "#live-text").send_keys("charlie delta echo")
        by(d, "#live-run").click()
        wait(lambda: d.execute_script("return document.body.dataset.rendered"))
        maps = attention_maps(ck, "charlie delta echo")
        by(d, '[data-kind="encoder"]').click()
        by(d, '[data-view="heatmap"]').click()
        assert abs(hover_cell(d, 2, 1) - float(maps.weights["encoder"][0, 0, 2, 1])) <= 1e-3
        assert by(d, "#translation").text == translate_lines(ck, ["charlie delta echo"], num_beams=1)[0][0].text
        # Bad input is a 400 with the message, shown on the page; the server goes on.
        bad = httpx.post(url + "api/explore", json={"text": ""})
        assert bad.status_code == 400 and "empty" in bad.json()["error"]
        assert httpx.post(url + "api/explore", content=b"{nope").status_code == 400
        by(d, "#live-text").clear()
        by(d, "#live-run").click()
        # The status says "running the model…" first, then the server's message.
        wait(lambda: "empty" in by(d, "#live-status").text)
        assert by(d, "#live-status").get_attribute("class") == "error"
        ok = httpx.post(url + "api/explore", json={"text": "alpha", "target": "alpha"})
        assert ok.status_code == 200 and ok.json()["outputs"]["translation"] == "alpha"
        assert json.loads(json.dumps(ok.json()))["model"]["family"] == "seq2seq"
    finally:
        server.shutdown()
        server.server_close()


def test_qa_page_marks_the_answer_span_in_its_context(browser, tmp_path):
    run = tmp_path / "qa"
    argv = ["train", "qa", "--data", "builtin:babi-1", "--max-steps", "10", "--eval-every", "10", "--out", run]
    assert cli.main([*map(str, argv), "--device", "cpu", "--quiet", *SMALL]) == 0
    ck = load_for("qa", run)
    question, context = "Where is Mary?", "Mary went to the garden. John went to the office."
    data = explorer_data(ck, question, context=context)
    [[answer]] = answer_questions(ck, [(question, context)])
    assert list(data["kinds"]) == ["encoder"]
    assert data["outputs"]["answer"] == {
        "text": answer.text,
        "start": answer.start,
        "end": answer.end,
        "score": answer.score,
    }
    assert data["kinds"]["encoder"]["queries"] == attention_maps(ck, question, context=context).queries["encoder"]
    page = write_explorer(ck, question, tmp_path / "qa.html", context=context)
    open_page(browser, page)
    assert by(browser, "#answer").text == answer.text == context[answer.start : answer.end]
    assert by(browser, "#context").text == context
