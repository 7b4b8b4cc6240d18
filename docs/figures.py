"""Regenerate the pictures of docs/guide.md (docs/images/*.png) with the library itself.

    .venv/bin/python docs/figures.py            # or: make figures   (about 4 minutes on a CPU)

1. positional-encoding.png  the fixed sinusoidal encodings of the paper (Section 3.5), from `sinusoidal_table`
2. learning-curve.png       the learning curves of a small encoder-decoder trained on built-in SCAN, drawn by
                            `viz.plot_curves` from the run's metrics.jsonl
3. attention-map.png        that model's cross-attention on one command (the target's queries over the source's
                            keys), drawn by `viz.plot_attention` from `inference.attention_maps`
4. explorer-*.png           the attention explorer (`explorer`) on that command, each view (head view, model
                            view, heatmap, heads table) screenshot in headless Chromium (Debian's chromium and
                            chromium-driver; skipped with a message when they are missing)

The training run is written to runs/figures-scan (`--run DIR`); `--skip-training` redraws from an existing run.
Everything runs on the CPU with a fixed seed and a fixed number of steps.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
COMMAND = "jump twice after walk left"  # the SCAN command whose attention is drawn


def positional_encoding_figure(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transformer_networks.nn import sinusoidal_table

    n_positions, d_model = 100, 128
    table = sinusoidal_table(n_positions, d_model).numpy()  # (positions, features)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    image = left.imshow(table, cmap="RdBu", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    left.set(
        title=f"sinusoidal encodings, d_model={d_model}: PE[pos, 2i] = sin, PE[pos, 2i+1] = cos",
        xlabel="feature (2i, 2i+1: one frequency)",
        ylabel="position",
    )
    fig.colorbar(image, ax=left, fraction=0.04)
    for feature in (0, 1, 10, 40, 100):
        right.plot(table[:, feature], label=f"feature {feature}")
    right.set(title="a few features along the sequence", xlabel="position", ylim=(-1.1, 1.6))
    right.legend(ncol=3, fontsize=8, loc="upper center")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def train_scan(run: Path, threads: int | None) -> None:
    from transformer_networks import TransformerConfig
    from transformer_networks.training import DataSpec, TrainConfig, train

    # A small version of configs/scan-demo.yaml: 2+2 layers, 128 dimensions, 4 heads, rotary positions.
    model = TransformerConfig.from_preset(
        "small", d_model=128, n_heads=4, n_layers=2, d_ff=512, dropout=0.0, positional="rope"
    )
    settings = TrainConfig(
        tokenizer="word",
        max_tokens=2048,
        lr=1.5e-3,
        schedule="cosine",
        warmup=100,
        min_lr_ratio=0.05,
        max_steps=1000,
        eval_every=200,
        eval_examples=100,
        log_every=25,
        device="cpu",
        seed=0,
        threads=threads,
    )
    result = train(
        "translation",
        run,
        data=DataSpec(data=["builtin:scan"]),
        model_config=model,
        train_config=settings,
        overwrite=True,
    )
    print(f"trained {result.steps} steps in {result.seconds:.0f} s; best exact match {result.best['exact_match']:.3f}")


def explorer_screenshots(run: Path) -> list[str]:
    """Screenshots of each view of the explorer page for COMMAND; the names of the images written."""
    from selenium import webdriver
    from selenium.webdriver import ActionChains
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from transformer_networks.explorer import write_explorer
    from transformer_networks.inference import load_for

    page = write_explorer(load_for("translation", run), COMMAND, Path(tempfile.mkdtemp()) / "explorer.html")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,820", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    names = []
    try:
        driver.get(page.as_uri())

        def click(css: str) -> None:
            driver.find_element(By.CSS_SELECTOR, css).click()

        for view, setup in (
            ("head", lambda: (click('[data-kind="encoder"]'), click('[data-head="1"]'))),
            ("model", lambda: click('[data-kind="cross"]')),
            ("heatmap", lambda: click('[data-layer="1"]')),
            ("table", lambda: click('th[data-col="entropy"]')),
        ):
            click(f'[data-view="{view}"]')
            setup()
            if view == "heatmap":  # the pointer on a cell: its value, row and column highlighted
                canvas = driver.find_element(By.ID, "heatmap")
                cell, margin = (float(canvas.get_attribute(f"data-{a}")) for a in ("cell", "margin"))
                x, y = margin + 2.5 * cell - canvas.size["width"] / 2, margin + 3.5 * cell - canvas.size["height"] / 2
                ActionChains(driver).move_to_element_with_offset(canvas, int(x), int(y)).perform()
            time.sleep(0.3)
            driver.save_screenshot(str(IMAGES / f"explorer-{view}.png"))
            names.append(f"explorer-{view}")
    finally:
        driver.quit()
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/figures-scan"), help="the training run directory")
    parser.add_argument("--skip-training", action="store_true", help="draw from the run already in --run")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads for training (default: PyTorch's; 1 is faster on a machine other jobs keep busy)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    IMAGES.mkdir(parents=True, exist_ok=True)

    positional_encoding_figure(IMAGES / "positional-encoding.png")
    if not args.skip_training:
        train_scan(args.run, args.threads)

    from transformer_networks.inference import attention_maps, load_for
    from transformer_networks.viz import plot_attention, plot_curves

    plot_curves(args.run, IMAGES / "learning-curve.png")
    ck = load_for("translation", args.run)
    maps = attention_maps(ck, COMMAND)  # the target is the model's own greedy translation
    last_layer = maps.weights["cross"].shape[0] - 1
    plot_attention(
        maps.weights["cross"],
        maps.queries["cross"],
        maps.keys["cross"],
        IMAGES / "attention-map.png",
        kind="cross",
        layer=last_layer,
    )
    names = ["positional-encoding", "learning-curve", "attention-map"]
    if shutil.which("chromium") and shutil.which("chromedriver"):
        names += explorer_screenshots(args.run)
    else:
        print("no chromium and chromedriver: the explorer's screenshots are left as they are")
    for name in names:
        path = IMAGES / f"{name}.png"
        print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size / 1024:.0f} KB")
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
