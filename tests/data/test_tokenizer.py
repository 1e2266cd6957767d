"""ByteTokenizer: round trips, the documented id layout, robustness, errors."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from seqjax.data import tokenizer


@pytest.fixture
def tok():
    return tokenizer.ByteTokenizer()


@pytest.mark.parametrize("text", ["", "hello", "héllo wörld", "日本語 🙂", "a\x00b\n"])
def test_round_trip_and_layout(tok, text):
    ids = tok.encode(text)
    assert ids.dtype == np.int32
    # Reference: each UTF-8 byte b is the id b + 3.
    assert ids.tolist() == [b + 3 for b in text.encode("utf-8")]
    assert tok.decode(ids) == text


@hypothesis.given(st.text())
def test_round_trip_any_text(text):
    tok = tokenizer.ByteTokenizer()
    ids = tok.encode(text, add_bos=True, add_eos=True)
    assert ids[0] == tokenizer.BOS_ID and ids[-1] == tokenizer.EOS_ID
    assert ((ids[1:-1] >= tokenizer.OFFSET) & (ids[1:-1] < tok.vocab_size)).all()
    assert tok.decode(ids) == text


def test_special_ids_and_vocab(tok):
    assert tok.vocab_size == 259
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    ids = tok.encode("ab", add_bos=True, add_eos=True)
    assert ids.tolist() == [1, ord("a") + 3, ord("b") + 3, 2]
    padded = np.concatenate([ids, np.zeros(5, np.int32)])
    assert tok.decode(padded) == "ab"  # specials and padding dropped
    assert isinstance(tok, tokenizer.Tokenizer)


def test_bytes_input_is_taken_as_is(tok):
    raw = b"\xff\x00abc"
    assert tok.encode(raw).tolist() == [255 + 3, 3, 100, 101, 102]
    assert tok.decode_bytes(tok.encode(raw)) == raw
    assert tok.encode(bytearray(raw)).tolist() == tok.encode(raw).tolist()


def test_decode_is_robust_to_invalid_utf8(tok):
    # A lone continuation byte, an invalid lead byte, and a truncated "é".
    ids = tok.encode(b"a\x80b\xffc\xc3")
    assert tok.decode(ids) == "a\ufffdb\ufffdc\ufffd"
    cut = tok.encode("日本")[:4]  # 3 bytes of 日 + 1 of 本
    assert tok.decode(cut) == "日\ufffd"


def test_errors(tok):
    with pytest.raises(TypeError, match="text must be str or bytes"):
        tok.encode(123)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 259\)"):
        tok.decode(np.array([5, 259]))
    with pytest.raises(ValueError, match="ids must be in"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="ids must be integers"):
        tok.decode(np.array([3.0, 4.0]))
    assert tok.decode([]) == ""
