"""The late-interaction judge (funnelrank.train.judge): its exported graph equals the cached training path
(the head over texts encoded alone), its channels mean what they say, and it exports to one ONNX graph whose
passage states the split scorer can reuse. Tiny random BERTs keep this fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from funnelrank.train.judge import FEATURES, JudgeHead, LateInteractionJudge, match_mask, mean_pool  # noqa: E402
from funnelrank.train.model import SegmentCrossEncoder  # noqa: E402

VOCAB = 200


def _judge(seed: int = 0, drop: tuple[str, ...] = (), rank: int = 0) -> LateInteractionJudge:
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    enc = SegmentCrossEncoder(transformers.BertModel(cfg, add_pooling_layer=False), n_separate=2, cls_id=101)
    head = JudgeHead(torch.rand(VOCAB) * 5, hidden=32, drop=drop, rank=rank)
    with torch.no_grad():  # a head that uses every channel and every learned piece
        head.importance.weight.normal_(0.0, 0.3)
        head.out.weight.normal_(0.0, 2.0)
        if rank:
            head.up.weight.normal_(0.0, 0.5)
    return LateInteractionJudge(enc, head).eval()


def _pair(q: list[int], p: list[int], pad: int = 0) -> tuple[torch.Tensor, ...]:
    ids = [101] + q + [102] + p + [102]
    tt = [0] * (len(q) + 2) + [1] * (len(p) + 1)
    am = [1] * len(ids) + [0] * pad
    return torch.tensor([ids + [0] * pad]), torch.tensor([am]), torch.tensor([tt + [0] * pad])


def _alone(judge: LateInteractionJudge, toks: list[int]) -> tuple[torch.Tensor, ...]:
    ids = torch.tensor([[101] + toks + [102]])
    am = torch.ones_like(ids)
    x = judge.encoder.encode_segment(ids, am, torch.arange(ids.shape[1])[None])
    return x, ids, match_mask(ids, am), mean_pool(x, am)


def test_graph_equals_the_head_over_texts_encoded_alone() -> None:
    judge = _judge()
    q, p = [5, 6, 7], [8, 6, 10, 11, 12]
    with torch.no_grad():
        full = judge(*_pair(q, p))[0, 0]
        padded = judge(*_pair(q, p, pad=5))[0, 0]
        cached = judge.head(*_alone(judge, q), *_alone(judge, p))[0]
    assert float(abs(full - cached)) < 1e-4
    assert float(abs(full - padded)) < 1e-4


def test_the_exact_channel_counts_shared_word_pieces_only() -> None:
    judge = _judge()
    col = FEATURES.index("exact_idf")
    with torch.no_grad():
        same = judge.head.features(*_alone(judge, [5, 6]), *_alone(judge, [6, 5, 9]))[0, col]
        half = judge.head.features(*_alone(judge, [5, 6]), *_alone(judge, [6, 9]))[0, col]
        none = judge.head.features(*_alone(judge, [5, 6]), *_alone(judge, [7, 9]))[0, col]
    idf = judge.head.idf
    assert float(same) == pytest.approx(1.0)
    assert float(half) == pytest.approx(float(idf[6] / (idf[5] + idf[6])), rel=1e-5)
    assert float(none) == 0.0


def test_a_missing_query_word_lowers_the_soft_minimum() -> None:
    judge = _judge()
    col = FEATURES.index("soft_min")
    with torch.no_grad():
        # quality = 5 * exact: the soft minimum over the query's words falls when one is absent
        judge.head.quality = torch.nn.Sequential(torch.nn.Linear(2, 1))
        judge.head.quality[0].weight.copy_(torch.tensor([[0.0, 5.0]]))
        judge.head.quality[0].bias.fill_(0.0)
        full = judge.head.features(*_alone(judge, [5, 6, 7]), *_alone(judge, [5, 6, 7]))[0, col]
        lacking = judge.head.features(*_alone(judge, [5, 6, 7]), *_alone(judge, [5, 6, 9]))[0, col]
    assert float(full) == pytest.approx(5.0, abs=1e-4)
    assert float(lacking) < 1.0


def test_dropped_channels_are_zero_and_unknown_ones_fail() -> None:
    judge = _judge(drop=("cos", "soft_min"))
    with torch.no_grad():
        f = judge.head.features(*_alone(judge, [5, 6]), *_alone(judge, [6, 9]))[0]
    assert float(f[FEATURES.index("cos")]) == 0.0 and float(f[FEATURES.index("soft_min")]) == 0.0
    assert float(f[FEATURES.index("maxsim_idf")]) != 0.0
    with pytest.raises(ValueError, match="unknown channels"):
        JudgeHead(torch.ones(VOCAB), hidden=32, drop=("nope",))


def test_the_encoder_must_be_fully_separate() -> None:
    judge = _judge()
    half = SegmentCrossEncoder(transformers.BertModel(transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64), add_pooling_layer=False), n_separate=1)
    with pytest.raises(ValueError, match="every layer per segment"):
        LateInteractionJudge(half, judge.head)


@pytest.mark.parametrize("rank", [0, 4])
def test_onnx_export_and_split_states_equal_torch(tmp_path, monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    pytest.importorskip("onnx")
    import onnxruntime as ort
    from funnelrank.rerank.split import SplitScorer, StateStore
    from funnelrank.train.export import export_fp32

    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "cache"))
    judge = _judge(seed=3, rank=rank)
    path = tmp_path / "judge.onnx"
    export_fp32(judge, path)
    rows = [([5, 6, 7], [8, 6, 10, 11, 12]), ([9], [9, 20, 21]), ([30, 31, 32, 33], [34])]
    n = max(len(q) + len(p) + 3 for q, p in rows)
    feed = {k: np.zeros((len(rows), n), dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    want = []
    for r, (q, p) in enumerate(rows):
        ids, am, tt = _pair(q, p)
        L = ids.shape[1]
        feed["input_ids"][r, :L], feed["attention_mask"][r, :L], feed["token_type_ids"][r, :L] = ids[0], am[0], tt[0]
        with torch.no_grad():
            want.append(float(judge(ids, am, tt)[0, 0]))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, feed)[0][:, 0]
    np.testing.assert_allclose(got, want, atol=1e-4)
    config = {"funnelrank": {"n_separate_layers": 2}, "num_hidden_layers": 2, "hidden_size": 32}
    scorer = SplitScorer.for_model(path, config, store=StateStore(), state_dtype=np.float32,
                                   session_factory=lambda f: ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]))
    lengths = [len(q) + len(p) + 3 for q, p in rows]
    first = scorer.run(feed, lengths)[:, 0]  # passages new: the whole graph, states kept
    again = scorer.run(feed, lengths)[:, 0]  # passages stored: only the head runs
    assert scorer.store.hits >= len(rows)
    np.testing.assert_allclose(first, want, atol=1e-4)
    np.testing.assert_allclose(again, want, atol=1e-4)


def _tiny_bert_dir(path) -> None:
    """A random 2-layer BERT directory with the base model's word pieces (a stand-in bi-encoder or teacher)."""
    import shutil

    from funnelrank.train.model import base_model_dir

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=128)
    transformers.BertModel(cfg, add_pooling_layer=False).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(base_model_dir() / name, path / name)


def test_probe_scores_an_encoder_directory_untrained(tmp_path) -> None:
    """judge-probe reads any bi-encoder directory: a text scores 1.0 against itself on every signal, so it
    ranks first; a group whose labelled answer is unrelated text does not."""
    from funnelrank.train.judge_data import Group
    from funnelrank.train.probe import SIGNALS, EncoderProbe, probe

    _tiny_bert_dir(tmp_path)
    q = "ibuprofen dose for a child"
    same = Group(q, [q, "the harbour freezes in january", "train timetables change on sunday"], [1, 0, 0], "t")
    wrong = Group(q, ["the harbour freezes in january", q, "train timetables change on sunday"], [1, 0, 0], "t")
    scores = EncoderProbe(tmp_path).scores(same)
    assert set(scores) == set(SIGNALS)
    assert abs(scores["cos"][0] - 1.0) < 1e-5 and abs(scores["maxsim"][0] - 1.0) < 1e-5
    out = probe(tmp_path, {"msmarco-validation": [same], "nearmiss-val": [same, wrong]})
    assert out["msmarco-validation"]["maxsim"]["mrr10"] == 1.0
    assert out["nearmiss-val"]["cos+maxsim"] == {"answer_first": 0.5, "best_gated": 0.5}


def test_a_teacher_directory_is_cached_once_and_resumes_without_the_model(tmp_path) -> None:
    """encode_all with TextEncoder.from_dir stores the teacher's states per text; a second call finds them all
    and never builds the encoder (a resumed run needs no model)."""
    from funnelrank.train.judge_data import TextEncoder, encode_all

    _tiny_bert_dir(tmp_path / "teacher")
    texts = [("ibuprofen dose for a child", 48), ("children take 10 mg per kg of ibuprofen", 224)]
    first = encode_all(texts, tmp_path / "cache", encoder=lambda: TextEncoder.from_dir(tmp_path / "teacher"))
    ids, states = first.get(*texts[1])
    assert states.shape == (len(ids), 32) and ids[0] == 101 and ids[-1] == 102

    def no_model() -> TextEncoder:
        raise AssertionError("the cache was complete: no encoder should be built")

    again = encode_all(texts, tmp_path / "cache", encoder=no_model)
    np.testing.assert_array_equal(again.get(*texts[1])[1], states)


def _cache(rows: dict[tuple[str, int], int], dim: int, seed: int):
    from funnelrank.train.judge_data import StateCache

    g = np.random.default_rng(seed)
    cache = StateCache()
    for key, n in rows.items():
        cache.index[key] = len(cache.ids)
        cache.ids.append(np.array([101] + list(range(1000, 1000 + n - 2)) + [102], dtype=np.int32))
        cache.states.append(g.normal(size=(n, dim)).astype(np.float16))
    return cache


def test_distillation_targets_are_the_teachers_maxsim_and_pull_the_student_toward_them() -> None:
    """teacher_targets gives each query piece's best teacher cosine over the passage (special tokens out),
    masks pairs whose texts split differently, and minimising the gap moves the learned space toward it."""
    from funnelrank.train.judge_data import P_TOKENS, Q_TOKENS
    from funnelrank.train.judge_train import maxsim_gap, pair_args, table_targets, teacher_targets, train

    rows = {("q", Q_TOKENS): 5, ("p1", P_TOKENS): 9, ("p2", P_TOKENS): 7}
    student = _cache(rows, 16, seed=1)
    teacher = _cache(rows, 24, seed=2)
    teacher.ids[2], teacher.states[2] = teacher.ids[2][1:], teacher.states[2][1:]  # p2 splits differently
    pairs = [("q", "p1"), ("q", "p2")]
    args = pair_args(student, pairs)
    target, where = teacher_targets(teacher, student, pairs, args)
    tq = torch.nn.functional.normalize(torch.tensor(teacher.states[0][1:-1], dtype=torch.float32), dim=-1)
    tp = torch.nn.functional.normalize(torch.tensor(teacher.states[1][1:-1], dtype=torch.float32), dim=-1)
    np.testing.assert_allclose(target[0, 1:4].numpy(), (tq @ tp.T).max(1).values.numpy(), atol=1e-5)
    assert where[0].tolist() == [0.0, 1.0, 1.0, 1.0, 0.0] and where[1].sum() == 0.0
    table = {pair: np.where(where[r] > 0, target[r], np.nan).astype(np.float16) for r, pair in enumerate(pairs)}
    t2, w2 = table_targets(table, pairs, args[2])  # the precomputed table reads back the same targets
    assert torch.equal(w2, where)
    np.testing.assert_allclose((t2 * w2).numpy(), (target * where).numpy(), atol=2e-3)

    head = JudgeHead(torch.ones(30522), hidden=16, rank=4)
    with torch.no_grad():  # a MaxSim handed in (as training does) is the one the head computes itself
        assert torch.equal(head(*args, maxsim=head.maxsim(args[0], args[4], args[6])), head(*args))
    with pytest.raises(ValueError, match="rank"):
        train(Path("unused"), Path("unused.pt"), distil=1.0)

    def gap() -> torch.Tensor:
        return maxsim_gap(head.maxsim(args[0], args[4], args[6]), target, where)

    before = float(gap().detach())
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    with torch.no_grad():  # start the space away from zero so its gradient is not nil
        head.up.weight.normal_(0.0, 0.1)
    for _ in range(100):
        opt.zero_grad()
        loss = gap()
        loss.backward()
        opt.step()
    assert float(gap().detach()) < 0.5 * before
