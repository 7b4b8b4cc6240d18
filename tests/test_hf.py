"""Hugging Face interop: tiny random BERT, GPT-2, BART and Marian models saved by `transformers` load into our
classes with the same outputs (1e-5) and the same greedy tokens; exports load back into `transformers`."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from transformer_networks import Seq2SeqTransformer, TransformerClassifier, TransformerLM, cli  # noqa: E402
from transformer_networks.interop.hf import FAMILIES, HFError, export_hf, load_hf  # noqa: E402
from transformer_networks.interop.weights import map_state_dict  # noqa: E402

V = 64  # vocabulary of every tiny model
SMALL = dict(max_position_embeddings=40)


def perturb(model):
    """Random weights everywhere, norms and biases included, so that a misplaced tensor cannot hide behind a
    default of ones or zeros (BART's final_logits_bias starts at zero)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # not Marian's fixed sinusoidal table, which is computed, never saved
                p.add_(torch.randn_like(p) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("final_logits_bias"):
                b.normal_()
    return model.eval()


def save(model, path):
    model.save_pretrained(path)
    return path


def bert(**kw):
    cfg = transformers.BertConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **SMALL, **kw
    )
    return cfg


def gpt2():
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=40, bos_token_id=V - 1, eos_token_id=V - 1
        )
    )


def bart():
    return transformers.BartForConditionalGeneration(
        transformers.BartConfig(
            vocab_size=V,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            **SMALL,
        )
    )


def marian():  # opus-mt's settings: SiLU ("swish"), scaled embeddings, pad = decoder start = last id
    return transformers.MarianMTModel(
        transformers.MarianConfig(
            vocab_size=V,
            d_model=32,
            encoder_layers=2,
            decoder_layers=3,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            activation_function="swish",
            scale_embedding=True,
            pad_token_id=V - 1,
            decoder_start_token_id=V - 1,
            eos_token_id=0,
            **SMALL,
        )
    )


def padded(rows, pad):
    """Right-padded ids and their mask."""
    T = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows])
    return ids, torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])


def random_rows(lengths, low=4, high=V - 2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(low, high, (n,), generator=g).tolist() for n in lengths]


def test_bert_hidden_states_and_classifier_logits(tmp_path):
    ref = perturb(transformers.BertForSequenceClassification(bert(num_labels=3)))
    ours = load_hf(save(ref, tmp_path / "bert"))
    assert isinstance(ours, TransformerClassifier) and ours.cfg.n_classes == 3
    ids, mask = padded(random_rows([9, 5, 7]), pad=0)
    types = (torch.arange(ids.size(1)) >= 3).long().expand_as(ids)  # a second segment from position 3
    with torch.no_grad():
        theirs = ref(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        hidden = ours.encode(ids, token_type_ids=types)
        logits = ours(ids, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(hidden[real], theirs.hidden_states[-1][real], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, theirs.logits, rtol=0, atol=1e-5)


def test_bertmodel_and_sentence_transformers_root_get_a_fresh_head(tmp_path):
    ref = perturb(transformers.BertModel(bert()))
    directory = save(ref, tmp_path / "st")
    (directory / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}])
    )
    ours = load_hf(directory, n_classes=5)
    assert ours.cfg.n_classes == 5 and ours.cfg.classifier_pooler
    ids = torch.tensor([random_rows([8])[0]])
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(ids), ref(ids).last_hidden_state, rtol=0, atol=1e-5)


def test_gpt2_logits_and_greedy_tokens_with_left_padding(tmp_path):
    ref = perturb(gpt2())
    ours = load_hf(save(ref, tmp_path / "gpt2"))
    assert isinstance(ours, TransformerLM)
    ids = torch.tensor(random_rows([10, 10]))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref(ids).logits, rtol=0, atol=1e-5)
    rows = random_rows([6, 3, 5], seed=2)
    T = max(map(len, rows))
    prompts = torch.tensor([[V - 1] * (T - len(r)) + r for r in rows])  # left padding
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    theirs = ref.generate(
        prompts, attention_mask=mask, max_new_tokens=12, do_sample=False, num_beams=1, pad_token_id=V - 1
    )
    mine = ours.generate(prompts, attention_mask=mask.bool(), max_new_tokens=12)
    assert mine.tolist() == theirs.tolist()


@pytest.mark.parametrize("build", [bart, marian], ids=["bart", "marian"])
def test_seq2seq_logits_and_greedy_tokens_with_padding(tmp_path, build):
    ref = perturb(build())
    ours = load_hf(save(ref, tmp_path / "m"))
    assert isinstance(ours, Seq2SeqTransformer)
    pad = ref.config.pad_token_id
    src, src_mask = padded(random_rows([7, 4, 6]), pad)
    tgt = torch.tensor(random_rows([5, 5, 5], seed=3))
    with torch.no_grad():
        theirs = ref(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt).logits
        torch.testing.assert_close(ours(src, tgt), theirs, rtol=0, atol=1e-5)
    generated = ref.generate(
        src,
        attention_mask=src_mask,
        max_new_tokens=10,
        do_sample=False,
        num_beams=1,
        min_length=0,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        no_repeat_ngram_size=0,
    )
    mine = ours.generate(src, max_new_tokens=10)
    assert mine.tolist() == generated[:, 1:].tolist()  # theirs starts with the decoder start token


def test_pytorch_model_bin_is_read_without_pickle(tmp_path):
    ref = perturb(gpt2())
    directory = tmp_path / "bin"
    directory.mkdir()
    ref.config.to_json_file(directory / "config.json")
    torch.save(ref.state_dict(), directory / "pytorch_model.bin")
    ids = torch.tensor(random_rows([6]))
    with torch.no_grad():
        torch.testing.assert_close(load_hf(directory)(ids), ref(ids).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_export_loads_in_transformers_with_the_same_outputs(tmp_path, kind):
    if kind == "gpt2":
        ours = perturb(load_hf(save(perturb(gpt2()), tmp_path / "src")))
        export_hf(ours, tmp_path / "out")
        theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
        ids = torch.tensor(random_rows([7, 7]))
        with torch.no_grad():
            torch.testing.assert_close(theirs(ids).logits, ours(ids), rtol=0, atol=1e-5)
    else:
        ours = perturb(load_hf(save(perturb(transformers.BertModel(bert())), tmp_path / "src"), n_classes=3))
        export_hf(ours, tmp_path / "out")
        theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "out").eval()
        ids, mask = padded(random_rows([6, 4]), pad=0)
        with torch.no_grad():
            torch.testing.assert_close(theirs(ids, attention_mask=mask).logits, ours(ids), rtol=0, atol=1e-5)


def test_an_lm_of_our_own_exports_as_gpt2(tmp_path):
    from transformer_networks import TransformerConfig

    cfg = TransformerConfig.from_preset(
        "gpt2-small", vocab_size=V, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_seq_len=40, dropout=0.0
    )
    ours = perturb(TransformerLM(cfg))
    export_hf(ours, tmp_path / "out")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    ids = torch.tensor(random_rows([9]))
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, ours(ids), rtol=0, atol=1e-5)
    with pytest.raises(HFError, match="norm_first=False"):
        export_hf(
            TransformerLM(TransformerConfig.from_preset("tiny", norm_first=False, positional="learned")), tmp_path / "x"
        )


def test_bad_directories_are_one_line_errors(tmp_path):
    good = save(perturb(gpt2()), tmp_path / "good")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HFError, match="no config.json"):
        load_hf(empty)
    (empty / "config.json").write_text(good.joinpath("config.json").read_text())
    with pytest.raises(HFError, match="no weights"):
        load_hf(empty)
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(HFError, match="'t5' is not supported; supported: bert, gpt2, llama, qwen3, bart, marian"):
        load_hf(t5)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    config = json.loads(good.joinpath("config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**config, "n_inner": 96}))
    (wrong / "model.safetensors").write_bytes(good.joinpath("model.safetensors").read_bytes())
    with pytest.raises(HFError, match=r"shape mismatch: .*ffn\.fc1\.weight \(model \(96, 32\), weights \(128, 32\)\)"):
        load_hf(wrong)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "config.json").write_text(good.joinpath("config.json").read_text())
    data = good.joinpath("model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(HFError, match="model.safetensors: cannot read"):
        load_hf(cut)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "config.json").write_text(good.joinpath("config.json").read_text())
    from safetensors.torch import load_file, save_file

    state = load_file(str(good / "model.safetensors"))
    save_file({**state, "transformer.h.0.attn.rotary.weight": torch.zeros(2)}, str(extra / "model.safetensors"))
    with pytest.raises(HFError, match=r"no place in the model: h\.0\.attn\.rotary\.weight"):
        load_hf(extra)
    # The same through the command line: exit 2, one line, no traceback.
    assert cli.main(["convert", str(t5), str(tmp_path / "out")]) == 2
    import subprocess
    import sys

    for bad in (cut, wrong, empty):
        done = subprocess.run(
            [sys.executable, "-m", "transformer_networks", "convert", str(bad), str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and str(bad) in done.stderr


def wordpiece(words):
    """A BERT-style tokenizer.json built here (no download): [PAD] [UNK] [CLS] [SEP] [MASK] + words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def test_train_classification_from_imported_bert(tmp_path):
    from transformer_networks.training.checkpoint import load_checkpoint

    words = "good bad great awful fine poor nice terrible movie film plot".split()
    tok = wordpiece(words)
    ref = perturb(
        transformers.BertModel(
            transformers.BertConfig(
                vocab_size=tok.get_vocab_size(),
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=64,
                max_position_embeddings=64,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
            )
        )
    )
    directory = save(ref, tmp_path / "bert")
    tok.save(str(directory / "tokenizer.json"))
    lines = [
        f"{a} {b}\t{'pos' if a in ('good', 'great', 'fine', 'nice') else 'neg'}" for a in words[:8] for b in words[8:]
    ]
    data = tmp_path / "train.tsv"
    data.write_text("text\tlabel\n" + "\n".join(lines) + "\n")
    run = tmp_path / "run"
    # A learning rate of 1e-12: the checkpoint still holds the imported encoder (to 1e-5), with a new 2-class head.
    assert (
        cli.main(
            [
                "train",
                "classification",
                "--init",
                str(directory),
                "--data",
                str(data),
                "--out",
                str(run),
                "--max-steps",
                "2",
                "--eval-every",
                "2",
                "--batch-size",
                "8",
                "--set",
                "lr=1e-12",
                "--set",
                "schedule=constant",
                "--set",
                "max_len=16",
                "--quiet",
            ]
        )
        == 0
    )
    ck = load_checkpoint(run / "last")
    assert ck.config.n_classes == 2 and ck.labels == ["neg", "pos"]
    assert ck.tokenizer.cls_id == tok.token_to_id("[CLS]") and ck.tokenizer.pad_id == 0
    ids = torch.tensor([ck.tokenizer.encode("good movie", cls=True)])
    assert ids[0].tolist() == [2, 5, 13]  # the imported WordPiece ids
    with torch.no_grad():
        torch.testing.assert_close(ck.model.encode(ids), ref(ids).last_hidden_state, rtol=0, atol=1e-5)
    # The run says where its tokenizer came from (a resume reads it back from last/).
    assert json.loads((run / "run.json").read_text())["train"]["tokenizer"] == "pretrained"


def test_train_lm_from_imported_gpt2_and_wrong_family(tmp_path, capsys):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from transformer_networks.training.checkpoint import load_checkpoint

    animals, places = ("cat", "dog", "bird", "fox"), ("mat", "log", "rug")
    text = " ".join(f"the {a} sat on the {b}." for a in animals for b in places) * 30
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        [text],
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    eos = tok.token_to_id("<|endoftext|>")
    ref = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=tok.get_vocab_size(),
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=64,
            bos_token_id=eos,
            eos_token_id=eos,
        )
    )
    directory = save(perturb(ref), tmp_path / "gpt2")
    tok.save(str(directory / "tokenizer.json"))
    data = tmp_path / "text.txt"
    data.write_text(text)
    run = tmp_path / "lm"
    assert (
        cli.main(
            [
                "train",
                "lm",
                "--init",
                str(directory),
                "--data",
                str(data),
                "--out",
                str(run),
                "--max-steps",
                "3",
                "--eval-every",
                "3",
                "--block-size",
                "16",
                "--batch-size",
                "4",
                "--quiet",
            ]
        )
        == 0
    )
    ck = load_checkpoint(run / "last")
    assert isinstance(ck.model, TransformerLM) and ck.config.eos_id == eos and ck.tokenizer.eos_id == eos
    assert ck.tokenizer.decode(ck.tokenizer.encode("the cat sat")) == "the cat sat"
    assert cli.main(["train", "classification", "--init", str(directory), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "does not load as family 'classifier'; it loads as 'lm' (TransformerLM)" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_export_follows_the_per_stack_layer_count(tmp_path, kind):
    # n_decoder_layers (an LM's depth) and n_encoder_layers (a classifier's) override n_layers: the export must
    # write the layers the model has, not n_layers of them.
    from safetensors.torch import load_file

    from transformer_networks import TransformerConfig

    if kind == "gpt2":
        cfg = TransformerConfig.from_preset(
            "gpt2-small",
            vocab_size=V,
            d_model=32,
            n_heads=4,
            n_layers=2,
            n_decoder_layers=3,
            d_ff=64,
            max_seq_len=40,
            dropout=0.0,
        )
        ours = perturb(TransformerLM(cfg))
    else:
        cfg = TransformerConfig.from_preset(
            "bert-base",
            vocab_size=V,
            d_model=32,
            n_heads=4,
            n_layers=2,
            n_encoder_layers=3,
            d_ff=64,
            max_seq_len=40,
            dropout=0.0,
            attention_dropout=0.0,
            n_classes=3,
        )
        ours = perturb(TransformerClassifier(cfg))
    assert len((ours.decoder if kind == "gpt2" else ours.encoder).stack.layers) == 3
    out = export_hf(ours, tmp_path / "out")

    # Every tensor of ours is in the file (one name of each group of tied tensors), with its values.
    family = FAMILIES[kind]
    exported = {k.removeprefix(family.prefix): v for k, v in load_file(str(out / "model.safetensors")).items()}
    mapped = map_state_dict(exported, family.table, family.transposed)
    groups = {}
    for name, tensor in ours.state_dict().items():
        groups.setdefault(tensor.data_ptr(), []).append(name)
    missing = [names for names in groups.values() if not any(n in mapped for n in names)]
    assert not missing, f"not exported: {missing}"
    mine = ours.state_dict()
    for name, tensor in mapped.items():
        torch.testing.assert_close(tensor, mine[name], rtol=0, atol=0, msg=name)
    # ... and the directory loads back into the same model.
    back = load_hf(out)
    assert set(back.state_dict()) == set(mine)

    ids, mask = padded(random_rows([7, 5]), pad=0)
    if kind == "gpt2":
        theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
        assert theirs.config.n_layer == 3
        ids = torch.tensor(random_rows([7, 7]))
        with torch.no_grad():
            torch.testing.assert_close(theirs(ids).logits, ours(ids), rtol=0, atol=1e-5)
    else:
        theirs = transformers.BertForSequenceClassification.from_pretrained(out).eval()
        assert theirs.config.num_hidden_layers == 3
        real = mask.bool()
        with torch.no_grad():
            ref = theirs(ids, attention_mask=mask, output_hidden_states=True)
            torch.testing.assert_close(ref.hidden_states[-1][real], ours.encode(ids)[real], rtol=0, atol=1e-5)
            torch.testing.assert_close(ref.logits, ours(ids), rtol=0, atol=1e-5)


def test_export_refuses_to_drop_a_tensor(tmp_path, monkeypatch):
    # A table that has no row for one of the model's tensors (here the final norm) is refused, naming it, rather
    # than written as a directory that transformers would fill with a fresh initialisation.
    import dataclasses

    from transformer_networks import TransformerConfig

    family = FAMILIES["gpt2"]
    table = {k: v for k, v in family.table.items() if not k.startswith("ln_f.")}
    monkeypatch.setitem(FAMILIES, "gpt2", dataclasses.replace(family, table=table))
    cfg = TransformerConfig.from_preset(
        "gpt2-small", vocab_size=V, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_seq_len=40
    )
    with pytest.raises(HFError, match=r"no place for decoder\.stack\.final_norm\.weight"):
        export_hf(TransformerLM(cfg), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_label_names_travel_with_a_classifier(tmp_path):
    # A trained run's labels name the classes of the loaded model, of its export (id2label / label2id, what
    # transformers' pipelines print) and of the export loaded back; save_pretrained keeps them too.
    from transformer_networks.checkpoints import load_checkpoint, load_model_dir, save_pretrained

    data = tmp_path / "cls.tsv"
    data.write_text("text\tlabel\n" + "good film\tpositive\nbad film\tnegative\nfine film\tneutral\n" * 8)
    argv = ["train", "classification", "--data", data, "--out", tmp_path / "run", "--max-steps", "2", "--quiet"]
    tiny = ["--preset", "tiny", "--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1", "--device", "cpu"]
    assert cli.main([*map(str, argv), *tiny]) == 0
    ck = load_checkpoint(tmp_path / "run")
    assert ck.model.labels == ck.labels == sorted(["positive", "negative", "neutral"])
    ours = perturb(load_hf(save(perturb(transformers.BertModel(bert())), tmp_path / "src"), n_classes=3))
    assert ours.labels is None  # a fresh head has no names
    ours.labels = ck.labels
    export_hf(ours, tmp_path / "out")
    config = transformers.AutoConfig.from_pretrained(tmp_path / "out")
    assert config.id2label == dict(enumerate(ck.labels)) and config.label2id == {n: i for i, n in enumerate(ck.labels)}
    assert load_hf(tmp_path / "out").labels == ck.labels
    assert load_model_dir(save_pretrained(ours, tmp_path / "ours")).labels == ck.labels


# --- export of every model we train (issue 28) ------------------------------------------------------------------


def ours_random(cls, **fields):
    from transformer_networks import TransformerConfig

    base = dict(vocab_size=V, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_seq_len=40, dropout=0.0)
    return perturb(cls(TransformerConfig.from_preset("small", **{**base, **fields})))


@pytest.mark.parametrize(
    "fields",
    [
        {},  # the default `train lm` model: sinusoidal, sqrt(d_model)-scaled tied embeddings, pre-LN, ReLU
        {"tie_embeddings": False, "activation": "gelu_tanh"},
        {"positional": "learned", "scale_embeddings": False},
    ],
)
def test_an_lm_exports_as_gpt2_with_the_same_logits_and_greedy_tokens(tmp_path, fields):
    ours = ours_random(TransformerLM, **fields)
    export_hf(ours, tmp_path / "out")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    ids = torch.tensor(random_rows([9, 9]))
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, ours(ids), rtol=0, atol=1e-5)
        prompt = ids[:1, :4]
        mine = ours.generate(prompt, max_new_tokens=12)
        assert torch.equal(theirs.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=None), mine)


@pytest.mark.parametrize(
    "fields",
    [
        {"n_kv_heads": 2},  # grouped-query attention, untied
        {"tie_embeddings": True, "scale_embeddings": True, "rope_theta": 500.0},
    ],
)
def test_a_rope_rmsnorm_swiglu_lm_exports_as_llama_and_loads_back(tmp_path, fields):
    llama = {"positional": "rope", "norm": "rmsnorm", "activation": "swiglu", "bias": False, "tie_embeddings": False}
    ours = ours_random(TransformerLM, **{**llama, "scale_embeddings": False, **fields})
    export_hf(ours, tmp_path / "out")
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = torch.tensor(random_rows([11, 11]))
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, ours(ids), rtol=0, atol=1e-5)
        prompt = ids[:1, :3]
        mine = ours.generate(prompt, max_new_tokens=10)
        assert torch.equal(theirs.generate(prompt, max_new_tokens=10, do_sample=False, eos_token_id=None), mine)
        back = load_hf(tmp_path / "out")  # a Llama directory loads as our LM with the same outputs
        torch.testing.assert_close(back(ids), theirs(ids).logits, rtol=0, atol=1e-5)


def test_a_llama_of_theirs_loads_with_the_same_logits(tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=40,
    )
    theirs = perturb(transformers.LlamaForCausalLM(config))
    ids = torch.tensor(random_rows([8]))
    ours = load_hf(save(theirs, tmp_path / "llama"))
    assert ours.cfg.kv_heads == 1 and ours.cfg.positional == "rope"
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids).logits, rtol=0, atol=1e-5)


def test_a_qwen3_of_theirs_loads_with_qk_norm_and_the_same_logits_and_tokens(tmp_path):
    """Qwen3 is Llama with QK-norm: per-head RMSNorm of queries and keys before RoPE (`qk_norm`). Their norms'
    scales are perturbed away from 1, so a norm left out or put after the rotation changes the logits."""
    config = transformers.Qwen3Config(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=40,
        tie_word_embeddings=False,
    )
    theirs = perturb(transformers.Qwen3ForCausalLM(config))
    assert not torch.equal(theirs.model.layers[0].self_attn.q_norm.weight, torch.ones(8))
    ids = torch.tensor(random_rows([8, 8]))
    ours = load_hf(save(theirs, tmp_path / "qwen3"))
    assert ours.cfg.qk_norm and ours.cfg.kv_heads == 2
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids).logits, rtol=0, atol=1e-5)
        prompt = ids[:1, :4]
        mine = ours.generate(prompt, max_new_tokens=10)  # the cached decoding step, with the norms
        given = theirs.generate(prompt, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert given.tolist() == mine.tolist()
    with pytest.raises(HFError, match="qk_norm=True"):  # not written back: no exported class has it
        export_hf(ours, tmp_path / "out")


def test_a_marian_shaped_translator_exports_as_marian_and_others_say_what_blocks_them(tmp_path):
    marian = {"norm_first": False, "sinusoidal_layout": "halves", "activation": "relu"}
    ours = ours_random(Seq2SeqTransformer, **marian)
    export_hf(ours, tmp_path / "out")
    theirs = transformers.MarianMTModel.from_pretrained(tmp_path / "out").eval()
    src, tgt = torch.tensor(random_rows([7, 7])), torch.tensor(random_rows([5, 5]))
    with torch.no_grad():
        torch.testing.assert_close(
            theirs(input_ids=src, decoder_input_ids=tgt).logits, ours(src, tgt), rtol=0, atol=1e-5
        )
        mine = ours.generate(src[:1], max_new_tokens=8)
        given = theirs.generate(src[:1], max_new_tokens=8, do_sample=False, num_beams=1, forced_eos_token_id=None)
        assert given[0, 1:].tolist()[: mine.shape[1]] == mine[0].tolist()  # theirs starts with the decoder start
    with pytest.raises(HFError, match=r"Marian: .*norm_first=True \(needs False\).*what exports: .*paper-base"):
        export_hf(ours_random(Seq2SeqTransformer), tmp_path / "x")  # the default translator: pre-LN


def test_a_default_lm_run_exports_with_its_tokenizer_and_transformers_continues_it_as_we_do(tmp_path, capsys):
    from transformer_networks.inference import load_for

    data = tmp_path / "lm.txt"
    data.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    argv = ["train", "lm", "--data", data, "--tokenizer", "bpe", "--vocab-size", "80", "--block-size", "16"]
    tiny = ["--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1", "--set", "d_ff=64"]  # default preset
    assert cli.main([*map(str, argv), "--max-steps", "3", "--out", str(tmp_path / "run"), "--quiet", *tiny]) == 0
    assert cli.main(["export", str(tmp_path / "run"), "--hf", str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    ck = load_for("lm", tmp_path / "run")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "the lazy fox"
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ck.tokenizer.encode(text)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.tensor([ck.tokenizer.encode(text)])
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, ck.model(ids), rtol=0, atol=1e-5)
        mine = ck.model.generate(ids, max_new_tokens=8)
        assert torch.equal(theirs.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None), mine)
