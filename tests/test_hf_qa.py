"""Hugging Face interop for extractive QA: a tiny random BertForQuestionAnswering loads as a TransformerQA with the
same start/end logits (1e-5); any BERT checkpoint loads as one with family="qa" (a fresh span head); a
TransformerQA exports as BertForQuestionAnswering, which `transformers` loads back with the same logits."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from test_hf import gpt2, padded, perturb, random_rows, save  # noqa: E402
from transformer_networks import TransformerClassifier, TransformerConfig, TransformerLM, from_pretrained  # noqa: E402
from transformer_networks.interop.hf import HFError, export_hf, load_hf  # noqa: E402
from transformer_networks.models import TransformerQA  # noqa: E402

V = 99


def bert_config(**kw):
    kw.setdefault("vocab_size", V)
    return transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        type_vocab_size=2,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **kw,
    )


def batch():
    """A right-padded batch of question + context windows: token types 0, then 1 from position 4."""
    ids, mask = padded(random_rows([11, 6, 9], high=V - 1), pad=0)
    types = ((torch.arange(ids.size(1)) >= 4).long().expand_as(ids) * mask).contiguous()
    return ids, mask, types


def assert_same_spans(ours, theirs, ids, mask, types):
    real = mask.bool()
    with torch.no_grad():
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
        spans = ours(ids, attention_mask=real, token_type_ids=types)
    torch.testing.assert_close(spans.start[real], ref.start_logits[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(spans.end[real], ref.end_logits[real], rtol=0, atol=1e-5)


def assert_fresh_span_head(model):
    # init_weights: xavier-uniform weight, zero bias (a loaded head would be perturbed)
    assert torch.count_nonzero(model.span_head.bias) == 0
    bound = (6 / (model.cfg.d_model + 2)) ** 0.5
    assert model.span_head.weight.abs().max() <= bound


def test_bert_for_question_answering_loads_with_the_same_logits(tmp_path):
    ref = perturb(transformers.BertForQuestionAnswering(bert_config()))
    ours = load_hf(save(ref, tmp_path / "qa"))
    assert isinstance(ours, TransformerQA) and not ours.training
    assert not hasattr(ours, "pooler") and ours.cfg.n_token_types == 2
    ids, mask, types = batch()
    assert_same_spans(ours, ref, ids, mask, types)
    with torch.no_grad():
        out = ours(ids, attention_mask=mask.bool(), token_type_ids=types, return_dict=True)
        theirs = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert out.logits.shape == (*ids.shape, 2)
    real = mask.bool()
    torch.testing.assert_close(out.logits[..., 0][real], theirs.start_logits[real], rtol=0, atol=1e-5)
    # from_pretrained picks the QA model by itself
    picked = from_pretrained(tmp_path / "qa")
    assert isinstance(picked, TransformerQA)
    assert_same_spans(picked, ref, ids, mask, types)


@pytest.mark.parametrize(
    "kind", ["BertModel", "BertForSequenceClassification", "BertForPreTraining", "BertForQuestionAnswering"]
)
def test_any_bert_checkpoint_loads_as_qa_with_family_qa(tmp_path, kind):
    ref = perturb(getattr(transformers, kind)(bert_config()))
    ours = load_hf(save(ref, tmp_path / "m"), family="qa")
    assert isinstance(ours, TransformerQA)
    ids, mask, types = batch()
    encoder = ref if kind == "BertModel" else ref.bert
    real = mask.bool()
    with torch.no_grad():
        hidden = ours(ids, attention_mask=real, token_type_ids=types, return_dict=True).last_hidden_state
        theirs = encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    torch.testing.assert_close(hidden[real], theirs[real], rtol=0, atol=1e-5)
    if kind == "BertForQuestionAnswering":
        torch.testing.assert_close(ours.span_head.weight, ref.qa_outputs.weight, rtol=0, atol=0)
    else:  # the pooler, classifier and cls.* heads are dropped; the span head is new
        assert_fresh_span_head(ours)


def test_a_qa_checkpoint_loads_as_a_classifier_with_a_fresh_head(tmp_path):
    ref = perturb(transformers.BertForQuestionAnswering(bert_config()))
    directory = save(ref, tmp_path / "qa")
    ours = load_hf(directory, family="classifier", n_classes=3)
    assert isinstance(ours, TransformerClassifier) and ours.cfg.n_classes == 3
    assert ours.pooler is None  # BertForQuestionAnswering has no pooler
    assert torch.count_nonzero(ours.head.bias) == 0
    ids, mask, types = batch()
    real = mask.bool()
    with torch.no_grad():
        hidden = ours.encode(ids, attention_mask=real, token_type_ids=types)
        theirs = ref.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    torch.testing.assert_close(hidden[real], theirs[real], rtol=0, atol=1e-5)


def test_export_of_a_loaded_qa_model_loads_in_transformers(tmp_path):
    from safetensors.torch import load_file

    ref = perturb(transformers.BertForQuestionAnswering(bert_config()))
    ours = perturb(load_hf(save(ref, tmp_path / "src")))
    out = export_hf(ours, tmp_path / "out")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForQuestionAnswering"] and "id2label" not in config
    names = set(load_file(str(out / "model.safetensors")))
    assert {"qa_outputs.weight", "qa_outputs.bias", "bert.embeddings.word_embeddings.weight"} <= names
    assert not any("pooler" in n or n.startswith("bert.qa_outputs") for n in names)
    theirs, info = transformers.AutoModelForQuestionAnswering.from_pretrained(out, output_loading_info=True)
    assert isinstance(theirs, transformers.BertForQuestionAnswering)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert_same_spans(ours, theirs.eval(), *batch())
    # ... and back into ours, tensor for tensor
    back = load_hf(out)
    assert isinstance(back, TransformerQA)
    mine = ours.state_dict()
    for name, tensor in back.state_dict().items():
        torch.testing.assert_close(tensor, mine[name], rtol=0, atol=0, msg=name)


def qa_config(**kw):
    fields = dict(
        vocab_size=V, d_model=32, n_heads=4, n_layers=2, d_ff=37, max_seq_len=64, dropout=0.0, attention_dropout=0.0
    )
    return TransformerConfig.from_preset("bert-base", **{**fields, **kw})


def test_a_qa_model_of_our_own_exports_as_bert_for_question_answering(tmp_path):
    ours = perturb(TransformerQA(qa_config(n_encoder_layers=3, pooling="mean", classifier_pooler=False)))
    out = export_hf(ours, tmp_path / "out")
    theirs, info = transformers.AutoModelForQuestionAnswering.from_pretrained(out, output_loading_info=True)
    assert theirs.config.num_hidden_layers == 3
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert_same_spans(ours, theirs.eval(), *batch())
    with pytest.raises(HFError, match=r"cannot be written as BERT: .*n_token_types=0 \(needs at least 1\)"):
        export_hf(TransformerQA(qa_config(n_token_types=0)), tmp_path / "x")
    with pytest.raises(HFError, match=r"cannot be written as BERT: norm_first=True \(needs False\)"):
        export_hf(TransformerQA(qa_config(norm_first=True)), tmp_path / "y")


def test_a_family_that_does_not_fit_is_a_one_line_error(tmp_path):
    lm = save(perturb(gpt2()), tmp_path / "gpt2")
    with pytest.raises(HFError) as e:
        load_hf(lm, family="qa")
    assert len(str(e.value).splitlines()) == 1
    assert "a gpt2 checkpoint does not load as family 'qa'; it loads as 'lm' (TransformerLM)" in str(e.value)
    assert str(lm) in str(e.value)
    qa = save(perturb(transformers.BertForQuestionAnswering(bert_config())), tmp_path / "qa")
    with pytest.raises(HFError, match=r"not load as family 'seq2seq'; .*'classifier' .*'qa' \(TransformerQA\)"):
        load_hf(qa, family="seq2seq")
    with pytest.raises(HFError, match="n_classes is for a classifier; this loads as a TransformerQA"):
        load_hf(qa, n_classes=3)
    assert isinstance(load_hf(lm, family="lm"), TransformerLM)  # the default family, named


def test_train_qa_from_a_bert_directory_end_to_end(tmp_path, capsys):
    """`train qa --init` on a random tiny BERT (WordPiece tokenizer.json beside it): the loss falls, `evaluate`
    scores the validation file and `--predictions` writes the official scripts' input, answers spans of contexts."""
    from test_hf import wordpiece
    from test_qa_cli import squad_file
    from transformer_networks import cli

    data = squad_file(tmp_path / "train.json", version_2=False)
    words = sorted(
        {
            w.strip(".?").lower()
            for ex in json.loads(data.read_text())["data"]
            for p in ex["paragraphs"]
            for text in [p["context"], *(q["question"] for q in p["qas"])]
            for w in text.split()
        }
    )
    tok = wordpiece([*words, ".", "?"])
    directory = save(perturb(transformers.BertModel(bert_config(vocab_size=tok.get_vocab_size()))), tmp_path / "b")
    tok.save(str(directory / "tokenizer.json"))
    run = tmp_path / "run"
    argv = [
        "train",
        "qa",
        "--init",
        directory,
        "--data",
        data,
        "--valid",
        data,
        "--out",
        run,
        "--max-steps",
        "40",
        "--eval-every",
        "40",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--set",
        "warmup=0",
        "--set",
        "max_len=64",  # the tiny BERT's positions (a real one has 512: the default 384 fits)
        "--set",
        "log_every=5",
        "--quiet",
    ]
    assert cli.main([str(a) for a in argv]) == 0, capsys.readouterr().err
    capsys.readouterr()
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in log if m.get("split") == "train"]
    assert losses[-1] < 0.5 * losses[0]  # start and end positions are learned
    predictions = tmp_path / "predictions.json"
    assert cli.main(["evaluate", str(run), "--json", "--predictions", str(predictions)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "qa" and result["examples"] == 16 and 0 <= result["exact_match"] <= result["f1"] <= 100
    contexts = {
        q["id"]: p["context"] for ex in json.loads(data.read_text())["data"] for p in ex["paragraphs"] for q in p["qas"]
    }
    written = json.loads(predictions.read_text())
    assert set(written) == set(contexts) and all(text in contexts[qid] for qid, text in written.items())
