"""Dialogue: the chat template (ids equal the rendered string's), the loss on assistant tokens against a
cross-entropy masked by hand, over-long conversations, token-by-token decoding against `generate`, a session that
keeps its KV cache between turns against a fresh prefill, streaming against `generate_text`, and the `chat` and
`evaluate` commands on a trained run."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
import torch.nn.functional as F

from transformer_networks import cli
from transformer_networks.config import TrainConfig, TransformerConfig
from transformer_networks.data.chat_template import CHAT_TOKENS, ChatTemplate, add_chat_tokens, render
from transformer_networks.data.dialogue import Conversation, Message, chat_split
from transformer_networks.data.tokenizer import train_tokenizer
from transformer_networks.generation import generate
from transformer_networks.generation.incremental import next_tokens
from transformer_networks.inference import ChatSession, chat_reply, generate_stream, generate_text, load_for
from transformer_networks.models import TransformerLM
from transformer_networks.tasks.chat import ChatTask

CONV = Conversation(
    "c",
    (
        Message("system", "Be brief."),
        Message("user", "My name is Ann."),
        Message("assistant", "Nice to meet you, Ann."),
        Message("user", "Thanks!"),
        Message("assistant", "You are welcome."),
        Message("user", "What is my name?"),
        Message("assistant", "Your name is Ann.", needs_context=True),
    ),
)

TINY = ["--preset", "tiny", "--set", "positional=learned", "--set", "scale_embeddings=false", "--device", "cpu"]


def make_tokenizer(kind="bpe"):
    texts = [m.content for c in chat_split(train=200, test=10)[0] for m in c.messages] + [
        m.content for m in CONV.messages
    ]
    return add_chat_tokens(train_tokenizer(texts, kind, 300))


def make_task(tok, **settings):
    return ChatTask(TrainConfig(**{"max_len": 256, **settings}), tok)


def tiny_lm(tok, max_seq_len=256):
    torch.manual_seed(0)
    cfg = TransformerConfig.from_preset("tiny", vocab_size=tok.vocab_size, max_seq_len=max_seq_len, dropout=0.0)
    return TransformerLM(cfg).eval()


@pytest.mark.parametrize("kind", ["bpe", "word", "char"])
def test_template_ids_equal_the_rendered_string_tokenized(kind):
    tok = make_tokenizer(kind)
    template = ChatTemplate.of(tok)
    assert len({template.end_id, *template.role_ids.values()}) == 4
    for prompt in (False, True):
        ids, owner = template.encode(CONV.messages, add_generation_prompt=prompt)
        assert ids == tok.tokenizer.encode(render(CONV.messages, prompt), add_special_tokens=False).ids
        assert len(owner) == len(ids) and ids.count(template.end_id) == len(CONV.messages)
    # Each message: its marker first, its end of turn last; the generation prompt is the assistant's marker.
    ids, owner = template.encode(CONV.messages, add_generation_prompt=True)
    for i, m in enumerate(CONV.messages):
        mine = [t for t, o in zip(ids, owner, strict=True) if o == i]
        assert mine[0] == template.role_ids[m.role] and mine[-1] == template.end_id
        assert template.decode(mine[1:]) == m.content or kind == "word"  # word-level joins words by spaces
    assert ids[-1] == template.role_ids["assistant"] and owner[-1] == -1
    # Adding the markers twice adds nothing.
    assert add_chat_tokens(tok).vocab_size == tok.vocab_size
    assert all(tok.tokenizer.token_to_id(t) is not None for t in CHAT_TOKENS)


def expected_loss(model, tok, conversations, train_on):
    """Cross-entropy over the chosen tokens, computed per conversation from message pieces built here."""
    template = ChatTemplate.of(tok)
    total, count = 0.0, 0
    for c in conversations:
        pieces = [[template.role_ids[m.role], *tok.encode(m.content), template.end_id] for m in c.messages]
        ids = [t for p in pieces for t in p]
        chosen = []  # positions (in ids) whose token the loss predicts
        last = max(i for i, m in enumerate(c.messages) if m.role == "assistant")
        start = 0
        for i, (m, piece) in enumerate(zip(c.messages, pieces, strict=True)):
            if train_on == "all":
                chosen += range(max(start, 1), start + len(piece))
            elif m.role == "assistant" and (train_on == "assistant" or i == last):
                chosen += range(start + 1, start + len(piece))  # content and end of turn, not the marker
            start += len(piece)
        with torch.no_grad():
            logits = model(torch.tensor([ids[:-1]]))[0]  # (T - 1, V)
        targets = torch.tensor(ids)
        for p in chosen:
            total += float(F.cross_entropy(logits[p - 1], targets[p]))
            count += 1
    return total / count


@pytest.mark.parametrize("train_on", ["assistant", "all", "last"])
def test_loss_equals_a_cross_entropy_masked_by_hand(train_on):
    tok = make_tokenizer()
    task = make_task(tok, train_on=train_on, batch_size=8)
    model = tiny_lm(tok)
    conversations = [CONV, *chat_split(train=5, test=1)[0]]  # different lengths: padded in the batch
    [batch] = task.batches(task.encode(conversations))
    with torch.no_grad():
        loss = float(task.loss(model, batch))
    assert loss == pytest.approx(expected_loss(model, tok, conversations, train_on), rel=1e-5)


def test_long_conversations_keep_the_system_message_and_lose_their_oldest_exchanges():
    tok = make_tokenizer()
    template = ChatTemplate.of(tok)
    keep = (CONV.messages[0], *CONV.messages[3:])  # the system message and the last two exchanges
    fits = len(template.encode(keep)[0])
    task = make_task(tok, max_len=fits)
    encoded = task.encode([CONV])
    assert encoded.truncated == 1 and encoded.dropped == 0
    assert encoded.kept_raw[0].messages == keep and len(encoded.examples[0].ids) == fits
    # Even the last exchange (with the system message) does not fit: dropped, counted.
    last = (CONV.messages[0], *CONV.messages[5:])
    encoded = make_task(tok, max_len=len(template.encode(last)[0]) - 1).encode([CONV])
    assert encoded.dropped == 1 and not encoded.examples


def test_next_tokens_equals_generate_greedy_and_seeded_sampling():
    tok = make_tokenizer()
    model = tiny_lm(tok, max_seq_len=40)
    prompt = ChatTemplate.of(tok).encode(CONV.messages[:2], add_generation_prompt=True)[0]
    ids = torch.tensor([prompt])
    greedy = generate(model, ids, max_new_tokens=15)[0, len(prompt) :].tolist()
    assert list(next_tokens(model, model.init_cache(1), prompt, max_new_tokens=15)) == greedy
    options = {"temperature": 0.8, "top_k": 50, "top_p": 0.95}
    sampled = generate(model, ids, max_new_tokens=15, do_sample=True, seed=3, **options)[0, len(prompt) :].tolist()
    mine = next_tokens(
        model,
        model.init_cache(1),
        prompt,
        max_new_tokens=15,
        do_sample=True,
        generator=torch.Generator().manual_seed(3),
        **options,
    )
    assert list(mine) == sampled
    # The context bounds the tokens: 40 positions, the last token yielded is never fed.
    assert len(list(next_tokens(model, model.init_cache(1), prompt, max_new_tokens=100))) == 40 - len(prompt) + 1


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small chat model trained on the built-in conversations long enough to answer from earlier turns."""
    out = tmp_path_factory.mktemp("chat") / "run"
    argv = ["train", "chat", "--out", out, "--max-steps", "600", "--eval-every", "600", "--batch-size", "32"]
    argv += ["--lr", "2e-3", "--set", "eval_examples=40", "--set", "warmup=50", "--set", "schedule=constant"]
    argv += ["--set", "d_model=128", "--set", "n_heads=4", "--set", "n_layers=3", "--set", "d_ff=256", "--quiet"]
    argv += TINY
    assert cli.main([str(a) for a in argv]) == 0
    return out


def test_a_session_keeps_its_cache_and_prefills_only_the_new_turn(run, monkeypatch):
    ck = load_for("chat", run)
    session = ChatSession(ck, do_sample=False)
    first = "".join(session.reply("My name is Frank."))
    assert session.cache.length == len(session.ids) - 1  # the reply's end of turn: not fed yet
    fed = []
    forward = ck.model.forward

    def counting(ids, **kw):
        fed.append(ids.size(1))
        return forward(ids, **kw)

    monkeypatch.setattr(ck.model, "forward", counting)
    second = "".join(session.reply("What is my name?"))
    template = ChatTemplate.of(ck.tokenizer)
    new = 1 + len(template.message("user", "What is my name?")) + 1  # end of turn, the message, the prompt
    assert fed[0] == new  # the history is not encoded again
    assert [m.role for m in session.messages] == ["user", "assistant", "user", "assistant"]
    assert session.messages[1].content == first and session.messages[3].content == second
    # The same reply as encoding the whole conversation afresh.
    monkeypatch.setattr(ck.model, "forward", forward)
    assert chat_reply(ck, session.messages[:3]) == second


NAMES = ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry")  # built-in names


def recalls(ck, name):
    """Whether the model, told a name, gives it back one turn later (greedy)."""
    session = ChatSession(ck, do_sample=False)
    "".join(session.reply(f"My name is {name}."))
    return "".join(session.reply("What is my name?")) == f"Your name is {name}."


def remembered_name(ck):
    """A name the trained model recalls (the first of NAMES that it does): what the terminal test talks about, so
    that a machine whose arithmetic trains a slightly different model still has one."""
    return next(name for name in NAMES if recalls(ck, name))


def test_the_trained_model_answers_from_an_earlier_turn(run):
    ck = load_for("chat", run)
    assert sum(recalls(ck, name) for name in NAMES) >= 6  # the answer is in an earlier turn, never the last
    session = ChatSession(ck, do_sample=False)
    "".join(session.reply("My name is Frank."))
    "".join(session.reply("Thanks!"))
    assert [m.role for m in session.messages] == ["user", "assistant"] * 2
    # A stop string ends the reply before it; the reply so far is the assistant's message.
    greeting = chat_reply(ck, [Message("user", "My name is Frank.")])
    stop = greeting.split()[-1]  # its last word
    stopped = ChatSession(ck, do_sample=False, stop=[stop])
    before = greeting[: greeting.index(stop)]
    assert "".join(stopped.reply("My name is Frank.")) == before and len(before) < len(greeting)
    assert stopped.messages[-1] == Message("assistant", before)
    assert stopped.ids[-1] == ChatTemplate.of(ck.tokenizer).end_id
    # /reset forgets: the next reply is the reply to that message alone.
    session.reset()
    assert "".join(session.reply("What is my name?")) == chat_reply(ck, [Message("user", "What is my name?")])
    assert [m.role for m in session.messages] == ["user", "assistant"]


def test_streamed_generation_equals_generate_text(run):
    ck = load_for("chat", run)
    prompt = "My name is Ann . What is my"
    for options in ({"do_sample": False}, {"do_sample": True, "seed": 5, "temperature": 1.5}):
        text = generate_text(ck, prompt, max_new_tokens=30, **options)
        pieces = list(generate_stream(ck, prompt, max_new_tokens=30, **options))
        assert "".join(pieces) == text and all(pieces)
    stop = generate_text(ck, prompt, max_new_tokens=30, do_sample=False).split()[2]
    assert "".join(generate_stream(ck, prompt, max_new_tokens=30, do_sample=False, stop=[stop])) == (
        generate_text(ck, prompt, max_new_tokens=30, do_sample=False, stop=[stop])
    )


def run_cli(monkeypatch, capsys, argv, stdin=b""):
    monkeypatch.setattr(cli, "_stdin", lambda: io.BytesIO(stdin))
    monkeypatch.setattr(cli, "_stdin_is_terminal", lambda: False)
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_chat_on_a_pipe_answers_one_json_line_per_conversation(run, monkeypatch, capsys):
    lines = [
        {"messages": [{"role": "user", "content": "My name is Frank."}]},
        {"conversations": [{"from": "human", "value": "Thanks!"}]},
        {
            "messages": [
                {"role": "user", "content": "My name is Frank."},
                {"role": "assistant", "content": "Nice to meet you, Frank."},
                {"role": "user", "content": "What is my name?"},
            ]
        },
    ]
    stdin = "\n".join(json.dumps(x) for x in lines).encode() + b"\n\n"
    code, out, err = run_cli(monkeypatch, capsys, ["chat", run, "--greedy", "--device", "cpu"], stdin)
    assert code == 0, err
    replies = [json.loads(line) for line in out.splitlines()]
    assert [r["role"] for r in replies] == ["assistant"] * 3
    ck = load_for("chat", run)
    assert replies[2]["content"] == chat_reply(ck, [Message(m["role"], m["content"]) for m in lines[2]["messages"]])


@pytest.mark.parametrize(
    "stdin, message",
    [
        (b'{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n', "stdin: line 2: invalid JSON"),
        (b'{"messages": [{"role": "robot", "content": "hi"}]}\n', "stdin: line 1: message 1: unknown role 'robot'"),
        (b'{"messages": [{"role": "user", "content": " "}]}\n', "stdin: line 1: message 1: 'content' is empty"),
        (
            b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n',
            "stdin: line 1: the conversation must end with a user message",
        ),
    ],
)
def test_bad_chat_lines_are_one_line_errors(run, monkeypatch, capsys, stdin, message):
    code, _, err = run_cli(monkeypatch, capsys, ["chat", run, "--device", "cpu"], stdin)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_evaluate_reports_reply_metrics(run, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, ["evaluate", run, "--json", "--device", "cpu"])
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "chat" and result["examples"] == 400  # the built-in test split
    for key in ("loss", "perplexity", "reply_exact_match", "context_reply_exact_match", "bleu", "chrf"):
        assert key in result
    assert 0 <= result["context_reply_exact_match"] <= 1 and result["perplexity"] >= 1
    assert 0 < result["distinct_1"] <= 1 and 0 < result["distinct_2"] <= 1


def spawn_chat(run, *extra):
    pexpect = pytest.importorskip("pexpect")
    argv = ["-m", "transformer_networks", "chat", str(run), "--device", "cpu", *extra]
    return pexpect.spawn(sys.executable, argv, encoding="utf-8", timeout=120, dimensions=(40, 250))


def say(child, text):
    """Send a line at the prompt; the reply printed before the next prompt."""
    child.sendline(text)
    child.expect_exact(text)  # the terminal's echo
    child.expect_exact("\r\n> ")
    return child.before.strip()


def test_chat_at_a_terminal_remembers_resets_and_saves(run, tmp_path):
    ck = load_for("chat", run)
    name = remembered_name(ck)
    child = spawn_chat(run, "--greedy")
    child.expect_exact("> ")
    greeting = say(child, f"My name is {name}.")
    assert greeting == chat_reply(ck, [Message("user", f"My name is {name}.")])
    assert say(child, "What is my name?") == f"Your name is {name}."  # depends on the first turn
    saved = tmp_path / "saved.jsonl"
    say(child, f"/save {saved}")
    say(child, "/reset")
    assert say(child, "What is my name?") == chat_reply(ck, [Message("user", "What is my name?")])
    say(child, f"/save {saved}")
    child.sendeof()  # Ctrl-D ends the session
    child.expect(pexpect_eof())
    first, second = [json.loads(line)["messages"] for line in saved.read_text().splitlines()]
    assert [m["content"] for m in first] == [
        f"My name is {name}.",
        greeting,
        "What is my name?",
        f"Your name is {name}.",
    ]
    assert len(second) == 2 and second[0]["content"] == "What is my name?"  # /reset forgot the first exchange


def pexpect_eof():
    import pexpect

    return pexpect.EOF


@pytest.fixture(scope="module")
def babbler(tmp_path_factory):
    """An untrained chat model with a long context whose replies run on for seconds, long enough to interrupt.

    Left as trained, its greedy reply to "My name is Frank." is "Got" and the end of turn: over before a Ctrl-C
    sent after its first letter can land. So the end-of-turn token's (tied) embedding is zeroed: its logit is
    0, under the largest of the other logits, and greedy replies run to --max-new-tokens."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from transformer_networks.checkpoints import write_checksums

    out = tmp_path_factory.mktemp("babble") / "run"
    argv = ["train", "chat", "--out", out, "--max-steps", "1", "--eval-every", "1", "--set", "eval_examples=2"]
    argv += ["--set", "max_len=2048", "--set", "d_model=256", "--set", "n_layers=4", "--set", "d_ff=512", "--quiet"]
    assert cli.main([str(a) for a in [*argv, *TINY]]) == 0
    weights = out / "best" / "model.safetensors"
    state = load_file(weights)
    with safe_open(weights, "pt") as f:
        metadata = f.metadata()  # names the tied weights
    end = ChatTemplate.of(load_for("chat", out).tokenizer).end_id
    state["decoder.embeddings.token.weight"][end] = 0.0
    save_file(state, weights, metadata=metadata)
    write_checksums(out / "best")
    ck = load_for("chat", out)
    for text in ("My name is Frank.", "Thanks!"):  # the test's premise: no early end of turn
        prompt = ChatTemplate.of(ck.tokenizer).encode([Message("user", text)], add_generation_prompt=True)[0]
        assert end not in next_tokens(ck.model, ck.model.init_cache(1), prompt, max_new_tokens=64)
    return out


def test_ctrl_c_stops_a_reply_and_keeps_the_session(babbler, tmp_path):
    child = spawn_chat(babbler, "--greedy", "--max-new-tokens", "1000")  # greedy: it runs to the limit
    child.expect_exact("> ")
    child.sendline("My name is Frank.")
    child.expect_exact("My name is Frank.")
    child.expect(r"\S")  # the reply has started
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact("\r\n> ")
    saved = tmp_path / "saved.jsonl"
    say(child, f"/save {saved}")
    [messages] = [json.loads(line)["messages"] for line in saved.read_text().splitlines()]
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[0]["content"] == "My name is Frank."
    # The session goes on: the next message gets a reply too (interrupted again, to keep the test short).
    child.sendline("Thanks!")
    child.expect_exact("Thanks!")
    child.expect(r"\S")
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact("\r\n> ")
    child.sendline("/exit")
    child.expect(pexpect_eof())


def test_export_writes_the_chat_template_and_transformers_replies_as_we_do(run, tmp_path):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "hf"
    assert cli.main(["export", str(run), "--hf", str(out)]) == 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ck = load_for("chat", run)
    template = ChatTemplate.of(ck.tokenizer)
    conversations = [
        [Message("user", "My name is Frank.")],
        [Message("system", "You are a helpful assistant."), Message("user", "Thanks!")],
        [*CONV.messages[1:3], Message("user", "What is my name?")],
    ]
    for messages in conversations:
        dicts = [{"role": m.role, "content": m.content} for m in messages]
        theirs = tokenizer.apply_chat_template(dicts, add_generation_prompt=True, tokenize=True)
        theirs = theirs["input_ids"] if not isinstance(theirs, list) else theirs
        ours = template.encode(messages, add_generation_prompt=True)[0]
        assert theirs == ours
        with torch.no_grad():  # greedy, stopping at the end of turn named by generation_config.json
            generated = model.generate(torch.tensor([ours]), max_new_tokens=30, do_sample=False)[0, len(ours) :]
        assert generated.tolist()[-1] == template.end_id
        assert tokenizer.decode(generated, skip_special_tokens=True) == chat_reply(ck, messages)


def test_train_chat_from_gpt2_weights_grows_the_vocabulary(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from test_hf import perturb, save

    conversations = chat_split(train=40, test=4)[0]
    texts = [m.content for c in conversations for m in c.messages]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=alphabet)
    )
    eos = tok.token_to_id("<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=256,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    gpt2 = perturb(transformers.GPT2LMHeadModel(config))
    directory = save(gpt2, tmp_path / "gpt2")
    tok.save(str(directory / "tokenizer.json"))
    data = tmp_path / "chats.jsonl"
    data.write_text(
        "".join(
            json.dumps({"messages": [{"role": m.role, "content": m.content} for m in c.messages]}) + "\n"
            for c in conversations
        )
    )
    run = tmp_path / "run"
    argv = ["train", "chat", "--init", directory, "--data", data, "--out", run, "--max-steps", "2"]
    argv += ["--eval-every", "2", "--batch-size", "4", "--set", "lr=1e-12", "--set", "schedule=constant"]
    assert cli.main([str(a) for a in [*argv, "--set", "warmup=0", "--quiet", "--device", "cpu"]]) == 0
    ck = load_for("chat", run / "last")
    n = tok.get_vocab_size()
    assert ck.tokenizer.vocab_size == n + 4 and ck.config.vocab_size == n + 4
    template = ChatTemplate.of(ck.tokenizer)
    assert sorted([template.end_id, *template.role_ids.values()]) == list(range(n, n + 4))
    # The imported rows are kept (a learning rate of 1e-12 leaves them as they were); the new ones are their mean.
    embeddings = ck.model.decoder.embeddings.token.weight
    old = gpt2.transformer.wte.weight
    torch.testing.assert_close(embeddings[:n], old, rtol=0, atol=1e-5)
    torch.testing.assert_close(embeddings[n:], old.mean(0).expand(4, -1), rtol=0, atol=1e-5)
    ids = torch.tensor([tok.encode("Thanks!").ids])
    with torch.no_grad():
        torch.testing.assert_close(ck.model(ids)[..., :n], gpt2(ids).logits, rtol=0, atol=1e-4)
    assert isinstance(chat_reply(ck, [Message("user", "Thanks!")], max_new_tokens=5), str)
    out = tmp_path / "hf"
    assert cli.main(["export", str(run / "last"), "--hf", str(out)]) == 0
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == template.end_id


def test_a_full_context_drops_the_oldest_exchanges_and_keeps_the_system_message(run):
    ck = load_for("chat", run)
    session = ChatSession(ck, system="You are a helpful assistant.", do_sample=False, max_new_tokens=16)
    limit = ck.config.max_seq_len
    for i in range(40):
        reply = "".join(session.reply("Thanks!" if i % 2 else "How are you?"))
        assert len(session.ids) <= limit and reply
    assert session.dropped > 0
    assert session.messages[0] == Message("system", "You are a helpful assistant.")
    assert [m.role for m in session.messages[1:3]] == ["user", "assistant"]
    # What is left replies as a fresh prefill of it does (the cache was rebuilt, positions from 0).
    assert "".join(session.reply("Thanks!")) == chat_reply(ck, [*session.messages[:-2], Message("user", "Thanks!")])


def test_a_bad_conversation_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "chats.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
        '{"messages": [{"role": "user", "content": "hi"}]}\n'
    )
    out = tmp_path / "run"
    assert cli.main(["train", "chat", "--data", str(bad), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 2: no assistant message" in err and err.count("\n") == 1
    assert not out.exists()


def test_a_message_too_long_for_the_context_is_an_error_that_keeps_the_conversation(run):
    from transformer_networks.errors import UserError

    ck = load_for("chat", run)
    session = ChatSession(ck, do_sample=False)
    first = "".join(session.reply("My name is Frank."))
    messages, ids = list(session.messages), list(session.ids)
    with pytest.raises(UserError, match="the message is too long"):
        "".join(session.reply("Thanks! " * 200))
    assert session.messages == messages and session.ids == ids
    assert "".join(session.reply("What is my name?")) == chat_reply(
        ck, [Message("user", "My name is Frank."), Message("assistant", first), Message("user", "What is my name?")]
    )
