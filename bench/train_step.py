"""Training-step speed side by side with the models users would pick instead.

    python bench/train_step.py lm            language model: ours vs transformers GPT2LMHeadModel vs x-transformers
    python bench/train_step.py lm --compile  the same with torch.compile on every side
    python bench/train_step.py seq2seq       encoder-decoder: ours vs an nn.Transformer model vs MarianMTModel
    python bench/train_step.py classifier    encoder classifier: ours vs BertForSequenceClassification
    python bench/train_step.py qa            extractive question answering: ours vs BertForQuestionAnswering
    python bench/train_step.py all           the five above

A step is what a training loop does per batch: forward, cross-entropy on the logits, backward, AdamW step. Every
side of a comparison gets the same shapes, the same batches in the same order, float32, the same number of threads,
the same optimizer (AdamW, fused where PyTorch has the kernel, as `transformer-networks train` uses it) and the same
initialisation scale (every matrix drawn from N(0, 0.02), biases and norms as built), dropout 0. The logits of every
side go through the same loss code, so only the models differ. After a warm-up the sides alternate (A B A B ...)
for --rounds rounds of several steps each; the figures are medians, the ratio is peer / ours (> 1: we are faster).

The models are built for the same mathematics where the libraries allow it: GPT-2 with `activation_function="gelu"`
(exact GELU, nanoGPT's choice and ours) is the peer the target is judged against; GPT-2 with its own default
(`gelu_new`, a tanh approximation written as separate operations) is shown beside it as users get it out of the box.
x-transformers has no biases in its attention projections, so it has slightly fewer parameters.

On a CPU our models run as the library runs them there, through `backends.onednn.use_onednn` (its mode for this
CPU: "full" on AMD, "few-rows" on Intel, TN_ONEDNN overrides); the peers as their users get them.

The seq2seq and classifier batches are padded, as a shuffled data loader yields them. Every side computes the same
loss on the same real tokens; ours skips the padding in its self-attention projections and feed-forward layers
while training (`nn.masks.on_real_tokens`, the outputs at real tokens and every gradient unchanged), the peers
compute every position. The language-model batches have no padding.

lm also times a large float32 matrix multiplication (2048 x 2048 x 2048) in the same alternation, through
`torch.mm` (MKL on a CPU, where the peers' products run) and on a CPU also through oneDNN (where ours run where
`backends.onednn` found it faster): the rates the machine's matrix unit reaches, against which the models'
achieved rate is read, counting 6N + 12 L T C floating-point operations per token (N parameters without the
position table, L layers, T block, C width; the forward and backward of every weight and of attention, as nanoGPT
and the PaLM paper estimate it).

Each part prints its table and replaces its own block in BENCHMARKS.md (machine, versions, date, command).
Peers are optional: `pip install -e '.[bench]'` installs transformers and x-transformers; a missing one is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from harness import alternate, as_users_run, footer, medians, versions, write_block
from torch import Tensor, nn

from transformer_networks.config import TransformerConfig
from transformer_networks.models import Seq2SeqTransformer, TransformerClassifier, TransformerLM, TransformerQA

SCRIPT = "bench/train_step.py"
PEERS = ("transformers", "x-transformers")


# --- shapes ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LMShape:
    name: str
    n_layers: int
    n_heads: int
    d_model: int
    block: int
    batch: int
    vocab: int
    steps: int  # steps per timed round
    target: str


LM_SHAPES = {
    "nanogpt": LMShape(
        "nanoGPT CPU (4 layers, 4 heads, 128 dims, block 64, batch 12, vocab 65)",
        4,
        4,
        128,
        64,
        12,
        65,
        steps=20,
        target=">= 1.3x",
    ),
    "large": LMShape(
        "larger (6 layers, 6 heads, 384 dims, block 256, batch 8, vocab 65)",
        6,
        6,
        384,
        256,
        8,
        65,
        steps=3,
        target=">= 1.05x and >= 90% of the matmul rate",
    ),
}


# --- what every side shares ------------------------------------------------------------------------------------


def same_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every matrix (embeddings, projections) from N(0, 0.02); vectors (biases, norm gains) as the library built."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    return model


def adamw(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.1, fused=fused)


@dataclass
class Side:
    """One model in a comparison: `loss(batch)` runs its forward and our shared loss on its logits."""

    name: str
    model: nn.Module
    loss: Callable[[tuple[Tensor, ...]], Tensor]
    judged: bool = True  # counts as a peer for the target (False: shown for information)


def train_steps(
    side: Side, batches: list[tuple[Tensor, ...]], device: torch.device, compile_model: bool
) -> tuple[Callable[[], Tensor], float]:
    """A function that takes len(batches) optimizer steps (each on the next batch), and the warm-up seconds
    (compilation included)."""
    side.model.to(device).train()
    if side.name == "ours":
        as_users_run(side.model, device)  # on a CPU: the oneDNN backend, as the library's trainer applies it
    optimizer = adamw(side.model, device)
    loss_fn = torch.compile(side.loss) if compile_model else side.loss

    def steps() -> Tensor:
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            optimizer.step()
        return loss.detach()

    start = time.perf_counter()
    for _ in range(2):  # warm-up: allocator, kernels, and compilation (twice: a recompilation shows up here)
        steps()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps, time.perf_counter() - start


def compare(
    sides: list[Side],
    batches: list[tuple[Tensor, ...]],
    args: argparse.Namespace,
    label: str,
    repeat: int,
    extra: dict[str, Callable[[], object]] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per step of every side (and per call of each `extra` function), and the warm-up seconds.
    Each timed run of a side takes `repeat` passes over `batches`."""
    runs, warmups = {}, {}
    for side in sides:
        print(f"{label}: warming up {side.name}", file=sys.stderr, flush=True)
        runs[side.name], warmups[side.name] = train_steps(side, batches, args.device, args.compile)
    for name, fn in (extra or {}).items():
        fn()
        runs[name] = fn
    times, _ = alternate(runs, args.rounds, repeat=repeat, device=args.device, label=f"{label} ")
    per_step = {name: t / (len(batches) if name in warmups else 1) for name, t in medians(times).items()}
    return per_step, warmups


def ratio_text(per_step: dict[str, float], sides: list[Side]) -> str:
    ours = per_step["ours"]
    peers = [s.name for s in sides if s.name != "ours" and s.judged]
    if not peers:
        return "no peer installed"
    best = min(peers, key=per_step.__getitem__)
    return f"best peer ({best}) / ours = **{per_step[best] / ours:.2f}x**"


def table(
    sides: list[Side],
    per_step: dict[str, float],
    warmups: dict[str, float],
    tokens: int | None,
    flops: float | None = None,
) -> list[str]:
    columns = ["side", "parameters", "ms per step", "peer / ours"]
    columns += ["tokens/s"] * bool(tokens) + ["GFLOP/s"] * bool(flops) + ["warm-up s"]
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for side in sides:
        t = per_step[side.name]
        n = sum(p.numel() for p in side.model.parameters())
        ratio = "1.00" if side.name == "ours" else f"{t / per_step['ours']:.2f}"
        row = f"| {side.name} | {n:,} | {t * 1000:.1f} | {ratio} |"
        if tokens:
            row += f" {tokens / t:,.0f} |"
        if flops:
            row += f" {flops / t / 1e9:.1f} |"
        rows.append(row + f" {warmups[side.name]:.1f} |")
    return rows


# --- language model --------------------------------------------------------------------------------------------


def lm_sides(shape: LMShape) -> list[Side]:
    L, H, C, T, V = shape.n_layers, shape.n_heads, shape.d_model, shape.block, shape.vocab

    def loss_of(logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))

    cfg = TransformerConfig.from_preset(
        "gpt2-small",
        vocab_size=V,
        d_model=C,
        n_heads=H,
        n_layers=L,
        d_ff=4 * C,
        max_seq_len=T,
        dropout=0.0,
        activation="gelu",
    )
    ours = same_init(TransformerLM(cfg))
    sides = [Side("ours", ours, lambda b: loss_of(ours(b[0]), b[1]))]
    if importlib.util.find_spec("transformers"):
        from transformers import GPT2Config, GPT2LMHeadModel

        for activation, name, judged in (
            ("gelu", "transformers GPT-2", True),
            ("gelu_new", "transformers GPT-2, default gelu_new", False),
        ):
            hf = same_init(
                GPT2LMHeadModel(
                    GPT2Config(
                        vocab_size=V,
                        n_positions=T,
                        n_embd=C,
                        n_layer=L,
                        n_head=H,
                        activation_function=activation,
                        resid_pdrop=0.0,
                        embd_pdrop=0.0,
                        attn_pdrop=0.0,
                        use_cache=False,
                        bos_token_id=0,
                        eos_token_id=0,
                        attn_implementation="sdpa",
                    )
                )
            )
            sides.append(Side(name, hf, lambda b, hf=hf: loss_of(hf(input_ids=b[0]).logits, b[1]), judged))
    if importlib.util.find_spec("x_transformers"):
        from x_transformers import Decoder, TransformerWrapper

        xt = same_init(
            TransformerWrapper(
                num_tokens=V,
                max_seq_len=T,
                tie_embedding=True,
                attn_layers=Decoder(dim=C, depth=L, heads=H, attn_dim_head=C // H, ff_mult=4, attn_flash=True),
            )
        )
        sides.append(Side("x-transformers", xt, lambda b: loss_of(xt(b[0]), b[1])))
    return sides


def matmul_rates(device: torch.device, n: int = 2048) -> tuple[dict[str, Callable[[], Tensor]], float]:
    """Float32 n x n x n matrix products to time, and their floating-point operations: `torch.mm` (MKL on a CPU,
    what the peers' products run on), and on a CPU where it is available the same product on oneDNN (what our
    models' products use there where it is faster)."""
    from transformer_networks.backends import onednn

    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator).to(device) for _ in range(2))
    products = {"torch.mm": lambda: a @ b}
    if device.type == "cpu" and onednn.available():
        products["oneDNN"] = lambda: onednn.linear(a, b)  # no gradient, a large product: oneDNN
    return products, 2.0 * n**3


def lm(args: argparse.Namespace) -> str:
    blocks = []
    for key in args.shapes:
        shape = LM_SHAPES[key]
        sides = lm_sides(shape)
        if args.compile:  # the out-of-the-box GPT-2 row is for eager mode only
            sides = [s for s in sides if s.judged]
        generator = torch.Generator().manual_seed(1)
        ids = torch.randint(shape.vocab, (shape.batch, shape.block + 1), generator=generator)
        batches = [(ids[:, :-1].to(args.device), ids[:, 1:].to(args.device))]
        products, multiply_flops = matmul_rates(args.device)
        extra = {
            name: lambda multiply=multiply: [multiply() for _ in range(5)][-1] for name, multiply in products.items()
        }
        per_step, warmups = compare(sides, batches, args, key, shape.steps, extra)
        rates = {name: multiply_flops / (per_step[name] / 5) / 1e9 for name in products}
        ours = sides[0].model
        position_table = ours.decoder.embeddings.position.embedding.weight.numel()
        n = sum(p.numel() for p in ours.parameters()) - position_table
        tokens = shape.batch * shape.block
        flops = (6 * n + 12 * shape.n_layers * shape.block * shape.d_model) * tokens
        ours_gflops = flops / per_step["ours"] / 1e9
        result = ratio_text(per_step, sides)
        blocks += [
            f"#### {shape.name}{', torch.compile' if args.compile else ', eager'}",
            "",
            *table(sides, per_step, warmups, tokens, flops),
            "",
            f"- Result: {result}; target {shape.target}",
            "- Matrix unit: a 2048 x 2048 x 2048 float32 product runs at "
            + " and ".join(f"{rate:.1f} GFLOP/s through {name}" for name, rate in rates.items())
            + " in the same alternation; ours reaches "
            + " and ".join(f"**{ours_gflops / rate:.0%}** of the {name} rate" for name, rate in rates.items())
            + f" ({ours_gflops:.1f} GFLOP/s, {flops / 1e9:.2f} GFLOP per step by 6N + 12LTC with N = {n:,})",
            "",
        ]
    mode = "compile" if args.compile else "eager"
    return "\n".join(
        [
            f"### Language-model training step ({mode}, {args.device.type})",
            "",
            f"Forward, cross-entropy, backward and AdamW step on a batch of random tokens; {args.rounds} alternating "
            f"rounds after two warm-up rounds; ms per step are medians. Ours: `TransformerLM` of the gpt2-small preset "
            "resized (pre-LN, learned positions, exact GELU, tied output); the peers at the same shape.",
            "",
            *blocks,
            *footer(SCRIPT, versions(*PEERS)),
        ]
    )


# --- encoder-decoder -------------------------------------------------------------------------------------------


def padded_batches(
    n_batches: int, rows: int, mean: float, std: float, low: int, high: int, vocab: int, seed: int
) -> list[Tensor]:
    """Batches of random token ids (>= 3) whose row lengths follow N(mean, std) clipped to [low, high], padded with 0
    at the end to the batch's longest row, as a shuffled data loader yields them."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        lengths = (torch.randn(rows, generator=generator) * std + mean).round().clamp(low, high).long()
        ids = torch.randint(3, vocab, (rows, int(lengths.max())), generator=generator)
        ids[torch.arange(ids.size(1))[None, :] >= lengths[:, None]] = 0
        batches.append(ids)
    return batches


class TorchSeq2Seq(nn.Module):
    """What a user builds from `torch.nn.Transformer`: shared scaled embeddings, sinusoidal positions, the
    Transformer, an output projection tied to the embeddings."""

    def __init__(self, vocab: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, max_len: int = 512) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        position = torch.arange(max_len)[:, None]
        frequencies = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * frequencies), torch.cos(position * frequencies)
        self.register_buffer("positions", table, persistent=False)
        self.transformer = nn.Transformer(
            d_model, n_heads, n_layers, n_layers, d_ff, dropout=0.0, batch_first=True, norm_first=True
        )
        self.out = nn.Linear(d_model, vocab, bias=False)
        self.out.weight = self.embedding.weight
        self.scale = math.sqrt(d_model)

    def embed(self, ids: Tensor) -> Tensor:
        return self.embedding(ids) * self.scale + self.positions[: ids.size(1)]

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.size(1), device=tgt.device)
        hidden = self.transformer(
            self.embed(src),
            self.embed(tgt),
            tgt_mask=causal,
            tgt_is_causal=True,
            src_key_padding_mask=src == 0,
            tgt_key_padding_mask=tgt == 0,
            memory_key_padding_mask=src == 0,
        )
        return self.out(hidden)


def seq2seq(args: argparse.Namespace) -> str:
    V, C, H, L, FF = 8000, 256, 4, 3, 1024

    def loss_of(logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=0, label_smoothing=0.1)

    cfg = TransformerConfig.from_preset("small", vocab_size=V, d_model=C, n_heads=H, n_layers=L, d_ff=FF, dropout=0.0)
    ours = same_init(Seq2SeqTransformer(cfg))
    torch_model = same_init(TorchSeq2Seq(V, C, H, L, FF))
    # Ours as its trainer computes the loss: given the labels, the output layer runs on the real targets only.
    sides = [
        Side("ours", ours, lambda b: ours(b[0], b[1], labels=b[2], label_smoothing=0.1).loss),
        Side("nn.Transformer model", torch_model, lambda b: loss_of(torch_model(b[0], b[1]), b[2])),
    ]
    if importlib.util.find_spec("transformers"):
        from transformers import MarianConfig, MarianMTModel

        marian = same_init(
            MarianMTModel(
                MarianConfig(
                    vocab_size=V,
                    d_model=C,
                    encoder_layers=L,
                    decoder_layers=L,
                    encoder_attention_heads=H,
                    decoder_attention_heads=H,
                    encoder_ffn_dim=FF,
                    decoder_ffn_dim=FF,
                    activation_function="relu",
                    dropout=0.0,
                    attention_dropout=0.0,
                    activation_dropout=0.0,
                    scale_embedding=True,
                    pad_token_id=0,
                    decoder_start_token_id=0,
                    eos_token_id=2,
                    max_position_embeddings=512,
                    attn_implementation="sdpa",
                )
            )
        )
        sides.append(
            Side(
                "transformers MarianMTModel",
                marian,
                lambda b: loss_of(
                    marian(
                        input_ids=b[0],
                        attention_mask=b[0] != 0,
                        decoder_input_ids=b[1],
                        decoder_attention_mask=b[1] != 0,
                    ).logits,
                    b[2],
                ),
            )
        )

    # Multi30k de->en with an 8000-piece vocabulary: about 16 source and 17 target tokens a sentence, at most ~40.
    sources = padded_batches(8, args.rows, 16, 5, 4, 40, V, seed=2)
    targets = padded_batches(8, args.rows, 17, 5, 4, 40, V, seed=3)
    batches = []
    for src, tgt in zip(sources, targets, strict=True):
        tgt = torch.cat([torch.ones(tgt.size(0), 1, dtype=torch.long), tgt], dim=1)  # BOS, then the sentence
        batches.append((src.to(args.device), tgt[:, :-1].to(args.device), tgt[:, 1:].to(args.device)))
    per_step, warmups = compare(sides, batches, args, "seq2seq", repeat=1)
    tokens = sum(int((b[2] != 0).sum()) for b in batches) / len(batches)
    result = ratio_text(per_step, sides)
    return "\n".join(
        [
            f"### Encoder-decoder training step ({args.device.type})",
            "",
            *table(sides, per_step, warmups, round(tokens)),
            "",
            f"- Result: {result}; target >= 1.2x",
            f"- Setup: 3 + 3 layers, 256 dims, 4 heads, feed-forward 1024, shared vocabulary of {V:,}, pre-LN, ReLU, "
            f"scaled embeddings, tied output; {len(batches)} batches of {args.rows} sentence pairs with Multi30k-like "
            "lengths (source N(16, 5), target N(17, 5) tokens, clipped to 4-40), padded at the end, cycled in the same "
            "order on every side; cross-entropy with label smoothing 0.1 ignoring padding; AdamW; dropout 0; float32. "
            "Ours: `Seq2SeqTransformer` of the `small` preset (sinusoidal positions), which skips the padding in its "
            "self-attention projections and feed-forward layers while training (same outputs and gradients at real "
            "tokens; the peers compute every position) and, given the labels as its trainer gives them "
            "(`model(src, tgt_in, labels=tgt_out, label_smoothing=0.1).loss`), runs the output layer and softmax on "
            "the real targets only (its smoothing mass skips the padding class; the same work); the nn.Transformer "
            "model adds the "
            "same embeddings and positions around `torch.nn.Transformer(norm_first=True, batch_first=True)` and is "
            "given its padding masks and causal mask; MarianMTModel (post-LN, its own sinusoidal positions) is built "
            f"with ReLU instead of its default swish. ms per step are medians over {len(batches)} steps per round, "
            f"{args.rounds} alternating rounds; tokens/s counts target tokens",
            *footer(SCRIPT, versions(*PEERS)),
        ]
    )


# --- classifier ------------------------------------------------------------------------------------------------


def classifier(args: argparse.Namespace) -> str:
    V, C, H, L, FF, N_CLASSES = 30522, 256, 4, 4, 1024, 2

    def loss_of(logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels)

    cfg = TransformerConfig.from_preset(
        "bert-base", vocab_size=V, d_model=C, n_heads=H, n_layers=L, d_ff=FF, dropout=0.0, n_classes=N_CLASSES
    )
    ours = same_init(TransformerClassifier(cfg))
    sides = [Side("ours", ours, lambda b: loss_of(ours(b[0], attention_mask=b[0] != 0), b[1]))]
    if importlib.util.find_spec("transformers"):
        from transformers import BertConfig, BertForSequenceClassification

        bert = same_init(
            BertForSequenceClassification(
                BertConfig(
                    vocab_size=V,
                    hidden_size=C,
                    num_hidden_layers=L,
                    num_attention_heads=H,
                    intermediate_size=FF,
                    hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0,
                    num_labels=N_CLASSES,
                    attn_implementation="sdpa",
                )
            )
        )
        sides.append(
            Side(
                "transformers BertForSequenceClassification",
                bert,
                lambda b: loss_of(bert(input_ids=b[0], attention_mask=(b[0] != 0).long()).logits, b[1]),
            )
        )

    # SST-2 sentences in WordPiece tokens: about 25 tokens with [CLS] and [SEP], up to ~66.
    generator = torch.Generator().manual_seed(4)
    batches = []
    for ids in padded_batches(8, args.rows, 25, 10, 4, 66, V, seed=5):
        ids[:, 0] = 1  # [CLS]
        labels = torch.randint(N_CLASSES, (ids.size(0),), generator=generator)
        batches.append((ids.to(args.device), labels.to(args.device)))
    per_step, warmups = compare(sides, batches, args, "classifier", repeat=1)
    tokens = sum(int((b[0] != 0).sum()) for b in batches) / len(batches)
    result = ratio_text(per_step, sides)
    return "\n".join(
        [
            f"### Classifier training step ({args.device.type})",
            "",
            *table(sides, per_step, warmups, round(tokens)),
            "",
            f"- Result: {result}; target >= 1.2x",
            f"- Setup: BERT architecture at BERT-mini size (4 layers, 256 dims, 4 heads, feed-forward 1024, WordPiece "
            f"vocabulary {V:,}, post-LN, exact GELU, LayerNorm on the embeddings, two token types, [CLS] pooler, 2 "
            f"classes); {len(batches)} batches of {args.rows} sentences with SST-2-like lengths (N(25, 10) tokens, "
            "clipped to 4-66), padded at the end, cycled in the same order on every side; ours is "
            "`TransformerClassifier` of the `bert-base` preset resized, given the padding as `attention_mask`, which "
            "skips it in self-attention projections and feed-forward layers while training (BERT computes every "
            "position); "
            f"cross-entropy, AdamW, dropout 0, float32; medians over {len(batches)} steps per round, {args.rounds} "
            "alternating rounds; tokens/s counts real tokens",
            *footer(SCRIPT, versions(*PEERS)),
        ]
    )


def qa_sides(V: int, C: int, H: int, L: int, FF: int) -> list[Side]:
    """Ours and BertForQuestionAnswering at one BERT shape; a batch is (ids, token types, starts, ends)."""

    def loss_of(start: Tensor, end: Tensor, b: tuple[Tensor, ...]) -> Tensor:
        return (F.cross_entropy(start, b[2]) + F.cross_entropy(end, b[3])) / 2

    cfg = TransformerConfig.from_preset(
        "bert-base", vocab_size=V, d_model=C, n_heads=H, n_layers=L, d_ff=FF, dropout=0.0
    )
    ours = same_init(TransformerQA(cfg))

    def our_loss(b: tuple[Tensor, ...]) -> Tensor:
        out = ours(b[0], attention_mask=b[0] != 0, token_type_ids=b[1])
        return loss_of(out.start, out.end, b)

    sides = [Side("ours", ours, our_loss)]
    if importlib.util.find_spec("transformers"):
        from transformers import BertConfig, BertForQuestionAnswering

        bert = same_init(
            BertForQuestionAnswering(
                BertConfig(
                    vocab_size=V,
                    hidden_size=C,
                    num_hidden_layers=L,
                    num_attention_heads=H,
                    intermediate_size=FF,
                    hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0,
                    attn_implementation="sdpa",
                )
            )
        )

        def bert_loss(b: tuple[Tensor, ...]) -> Tensor:
            out = bert(input_ids=b[0], attention_mask=(b[0] != 0).long(), token_type_ids=b[1])
            return loss_of(out.start_logits, out.end_logits, b)

        sides.append(Side("transformers BertForQuestionAnswering", bert, bert_loss))
    return sides


def qa(args: argparse.Namespace) -> str:
    """SQuAD windows through a 6-layer, 384-wide BERT (MiniLM's shape, what users fine-tune on a CPU)."""
    V, C, H, L, FF, ROWS = 30522, 384, 6, 6, 1536, args.qa_rows
    sides = qa_sides(V, C, H, L, FF)
    # SQuAD v1.1 windows in WordPiece tokens: [CLS] question (~12) [SEP] paragraph (~160) [SEP], about 175 tokens,
    # N(175, 60) clipped to 40-384 (max_len); the question is segment 0, the rest segment 1.
    generator = torch.Generator().manual_seed(4)
    batches = []
    for ids in padded_batches(4, ROWS, 175, 60, 40, 384, V, seed=6):
        ids[:, 0] = 1  # [CLS]
        types = torch.ones_like(ids)
        types[:, :14] = 0
        types[ids == 0] = 0
        lengths = (ids != 0).sum(1)
        starts = (torch.rand(ids.size(0), generator=generator) * (lengths - 20)).long() + 14
        ends = starts + torch.randint(0, 5, (ids.size(0),), generator=generator)
        batches.append(tuple(t.to(args.device) for t in (ids, types, starts, ends)))
    per_step, warmups = compare(sides, batches, args, "qa", repeat=1)
    tokens = sum(int((b[0] != 0).sum()) for b in batches) / len(batches)
    per_example = {name: t / ROWS for name, t in per_step.items()}
    return "\n".join(
        [
            f"### Question-answering training step ({args.device.type})",
            "",
            *table(sides, per_step, warmups, round(tokens)),
            "",
            f"- Result: {ratio_text(per_step, sides)}; training throughput "
            + ", ".join(f"{name} {1 / t:.1f} windows/s" for name, t in per_example.items())
            + "; target: ours faster",
            f"- Setup: BERT architecture at MiniLM size (6 layers, 384 dims, 6 heads, feed-forward 1536, WordPiece "
            f"vocabulary {V:,}, post-LN, exact GELU, two token types) with a span head (start and end logits); "
            f"{len(batches)} batches of {ROWS} SQuAD-like windows (N(175, 60) tokens clipped to 40-384, the first 14 "
            "tokens segment 0), padded at the end, cycled in the same order on every side; ours is `TransformerQA` "
            "of the `bert-base` preset resized, given the padding as `attention_mask` (skipped in its projections "
            "and feed-forward layers while training; BERT computes every position); the loss is the mean of the "
            "start and end cross-entropies, AdamW, dropout 0, float32; medians over "
            f"{len(batches)} steps per round, {args.rounds} alternating rounds; tokens/s counts real tokens",
            *footer(SCRIPT, versions(*PEERS)),
        ]
    )


# --- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", choices=["lm", "seq2seq", "classifier", "qa", "all"])
    parser.add_argument("--compile", action="store_true", help="torch.compile every side (lm)")
    parser.add_argument("--shapes", nargs="+", choices=list(LM_SHAPES), default=list(LM_SHAPES), help="lm shapes")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, alternating the sides (default 5)")
    parser.add_argument("--rows", type=int, default=64, help="seq2seq/classifier: sentences per batch")
    parser.add_argument("--qa-rows", type=int, default=16, help="qa: windows per batch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    args.device = torch.device(args.device)
    parts = ["lm", "lm-compile", "seq2seq", "classifier", "qa"] if "all" in args.parts else args.parts
    for part in parts:
        part_args = argparse.Namespace(**vars(args))
        if part == "lm-compile":
            part, part_args.compile = "lm", True
        text = {"lm": lm, "seq2seq": seq2seq, "classifier": classifier, "qa": qa}[part](part_args)
        print(text, flush=True)
        if not args.no_write:
            name = f"{part}{'-compile' if part_args.compile and part == 'lm' else ''}-{args.device.type}"
            write_block(name, text, script="train_step")


if __name__ == "__main__":
    main()
