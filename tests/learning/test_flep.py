"""FLEP's three-layer image cipher: round trip, refusals, key sensitivity, the classic
chosen-plaintext attack, the quality figures and the encrypted store."""

from __future__ import annotations

import numpy as np
import pytest

from learning.data import Dataset, load_dataset
from learning.federated.cipher import (
    AuthenticationError,
    CiphertextFormatError,
    EncryptedImage,
    FlepCipher,
    WrongKeyError,
)
from learning.federated.cipher_attack import chosen_plaintext_attack
from learning.federated.cipher_quality import (
    IDEAL,
    adjacent_correlation,
    entropy,
    histogram_chi_square,
    key_sensitivity,
    npcr_critical,
    npcr_uaci,
    plaintext_sensitivity,
    uaci_critical_interval,
)
from learning.federated.vault import EncryptedImageStore

KEY = bytes(range(32))
NONCE = b"\x01" * 16


def smooth_image(shape=(64, 96, 3), seed=0) -> np.ndarray:
    """A correlated, natural-looking test image (gradients plus a little noise)."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    base = np.add.outer(np.linspace(0, 160, h), np.linspace(0, 80, w))
    img = base[..., None] + rng.normal(0, 3, shape if len(shape) == 3 else (*shape, 1))
    return np.clip(img, 0, 255).astype(np.uint8).reshape(shape)


@pytest.mark.parametrize("shape", [(8, 8), (1, 1), (5, 7, 3), (64, 96, 3)])
def test_round_trip(shape):
    cipher = FlepCipher(KEY)
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    ct = cipher.encrypt(image)
    assert ct.body.shape == image.shape and ct.body.dtype == np.uint8
    assert np.array_equal(cipher.decrypt(ct), image)
    assert np.array_equal(cipher.decrypt(ct.to_bytes()), image)
    assert np.array_equal(cipher.decrypt(EncryptedImage.from_bytes(ct.to_bytes())), image)


def test_same_image_twice_gives_unrelated_ciphertexts():
    cipher = FlepCipher(KEY)
    image = smooth_image()
    npcr, _ = npcr_uaci(cipher.encrypt(image).body, cipher.encrypt(image).body)
    assert npcr > 0.99
    # a fixed nonce is deterministic (the keystream depends on nonce and plaintext only)
    assert np.array_equal(cipher.encrypt(image, NONCE).body, cipher.encrypt(image, NONCE).body)


@pytest.mark.parametrize("bad", [b"", b"short", bytes(15)])
def test_short_keys_refused(bad):
    with pytest.raises(ValueError, match="at least 16 bytes"):
        FlepCipher(bad)


def test_non_bytes_key_and_bad_images_refused():
    with pytest.raises(TypeError, match="key must be bytes"):
        FlepCipher("a string key of many chars")  # type: ignore[arg-type]
    cipher = FlepCipher(KEY)
    with pytest.raises(TypeError, match="uint8"):
        cipher.encrypt(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        cipher.encrypt(np.zeros(16, dtype=np.uint8))


def test_wrong_key_refused():
    ct = FlepCipher(KEY).encrypt(smooth_image()).to_bytes()
    other = bytearray(KEY)
    other[0] ^= 1
    with pytest.raises(WrongKeyError, match="wrong key"):
        FlepCipher(bytes(other)).decrypt(ct)


@pytest.mark.parametrize("where", ["body", "tag", "nonce", "shape"])
def test_tampered_ciphertext_refused(where):
    cipher = FlepCipher(KEY)
    ct = cipher.encrypt(smooth_image((16, 16)))
    raw = bytearray(ct.to_bytes())
    header = len(ct.header())
    offsets = {
        "body": len(raw) - 1,
        "tag": header + 8 + 16,
        "nonce": header + 8,
        "shape": header - 1,  # last byte of the width
    }
    raw[offsets[where]] ^= 0x01
    if where == "shape":
        with pytest.raises(CiphertextFormatError, match="does not match shape"):
            cipher.decrypt(bytes(raw))
    else:
        with pytest.raises(AuthenticationError, match="tampered"):
            cipher.decrypt(bytes(raw))


def test_truncated_and_foreign_bytes_refused():
    cipher = FlepCipher(KEY)
    raw = cipher.encrypt(smooth_image((8, 8))).to_bytes()
    with pytest.raises(CiphertextFormatError, match="does not match shape"):
        cipher.decrypt(raw[:-1])
    with pytest.raises(CiphertextFormatError, match="magic"):
        cipher.decrypt(b"not a ciphertext at all")


def test_key_sensitivity():
    image = smooth_image()

    def enc(key: bytes, img: np.ndarray) -> np.ndarray:
        return FlepCipher(key).encrypt(img, NONCE).body

    n = image.size
    for bit in (0, 77, 255):
        npcr, uaci = key_sensitivity(enc, KEY, image, bit=bit)
        assert npcr > npcr_critical(n)
        lo, hi = uaci_critical_interval(n, alpha=0.001)
        assert lo < uaci < hi


def weak_cipher(key_seed: int, shape: tuple[int, ...]):
    """A classic broken design: fixed key-only permutation, then XOR with a fixed keystream."""
    rng = np.random.default_rng(key_seed)
    perm = rng.permutation(int(np.prod(shape)))
    stream = rng.integers(0, 256, int(np.prod(shape)), dtype=np.uint8)

    def encrypt(image: np.ndarray) -> np.ndarray:
        return np.bitwise_xor(image.reshape(-1)[perm], stream).reshape(shape)

    return encrypt


def test_chosen_plaintext_attack_breaks_a_key_only_keystream():
    """The attack works: it fully breaks a permutation + XOR cipher whose keystream depends
    on the key only (so its failure on FLEP below means something)."""
    target = np.random.default_rng(3).integers(0, 256, (8, 8), dtype=np.uint8)
    encrypt = weak_cipher(5, target.shape)
    result = chosen_plaintext_attack(encrypt, encrypt(target), target)
    assert result.keystream_repeat == 1.0 and result.located == 1.0
    assert result.recovered == 1.0 and result.broken
    assert np.array_equal(result.guess, target)


@pytest.mark.parametrize("fixed_nonce", [False, True])
def test_chosen_plaintext_attack_fails_on_flep(fixed_nonce):
    cipher = FlepCipher(KEY)
    target = np.random.default_rng(3).integers(0, 256, (8, 8), dtype=np.uint8)

    def encrypt(image: np.ndarray) -> np.ndarray:
        return cipher.encrypt(image, NONCE if fixed_nonce else None).body

    result = chosen_plaintext_attack(encrypt, encrypt(target), target)
    assert result.located < 0.05  # no one-pixel query localises to one byte
    assert result.mean_changed > 0.95  # a one-pixel change alters almost every byte
    assert result.recovered < 0.05 and not result.broken  # chance is 1/256
    if not fixed_nonce:
        assert result.keystream_repeat < 0.05  # no fixed keystream to recover


def test_wu_critical_values_match_the_published_table():
    # Wu, Noonan and Agaian (2011), 256 x 256 images: NPCR* = 99.5693 % (alpha 0.05),
    # 99.5527 % (0.01), 99.5341 % (0.001); UACI*_0.05 interval [33.2824 %, 33.6447 %];
    # 512 x 512: NPCR*_0.05 = 99.5893 %
    assert npcr_critical(256 * 256, 0.05) == pytest.approx(0.995693, abs=2e-6)
    assert npcr_critical(256 * 256, 0.01) == pytest.approx(0.995527, abs=2e-6)
    assert npcr_critical(256 * 256, 0.001) == pytest.approx(0.995341, abs=2e-6)
    assert npcr_critical(512 * 512, 0.05) == pytest.approx(0.995893, abs=2e-6)
    lo, hi = uaci_critical_interval(256 * 256, 0.05)
    assert lo == pytest.approx(0.332824, abs=2e-6) and hi == pytest.approx(0.336447, abs=2e-6)
    assert IDEAL["npcr"] == pytest.approx(0.996094, abs=1e-6)
    assert IDEAL["uaci"] == pytest.approx(0.334635, abs=1e-6)


def test_quality_figures_of_cipher_images():
    """Deterministic (fixed nonces): the statistical tests would fail alpha of the time."""
    cipher = FlepCipher(KEY)
    nonces = iter(bytes([i]) * 16 for i in range(10))
    image = smooth_image((128, 128, 3))
    body = cipher.encrypt(image, next(nonces)).body
    assert entropy(image) < 7.8 and entropy(body) > 7.99
    plain_corr = adjacent_correlation(image)
    cipher_corr = adjacent_correlation(body)
    assert set(cipher_corr) == {"horizontal", "vertical", "diagonal"}
    assert min(plain_corr.values()) > 0.9
    assert max(abs(v) for v in cipher_corr.values()) < 0.03
    stat, p = histogram_chi_square(body)
    assert p > 0.001 and histogram_chi_square(image)[1] < 1e-6
    npcr, uaci = plaintext_sensitivity(
        lambda im: cipher.encrypt(im, next(nonces)).body, image, rng=0
    )
    assert npcr > npcr_critical(image.size, alpha=0.001)
    lo, hi = uaci_critical_interval(image.size, alpha=0.001)
    assert lo < uaci < hi


def test_encrypted_store_round_trip_and_refusals():
    train, _ = load_dataset("digits", rng=0)
    data = train.subset(np.arange(20))
    store = EncryptedImageStore(FlepCipher(KEY), data)
    assert len(store) == 20 and store.stored_bytes > 20 * 64
    back = store.dataset()
    assert isinstance(back, Dataset) and back.x.shape == data.x.shape
    assert float((back.x - data.x).abs().max()) <= 0.5 / 255 + 1e-6  # 8-bit quantisation
    assert bool((back.y == data.y).all())
    with pytest.raises(WrongKeyError):
        FlepCipher(bytes(32)).decrypt(store.export(0))
