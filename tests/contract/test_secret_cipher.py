"""The secret cipher on Fernet: values come back as sealed, a wrong key or an altered token is refused, and
the key comes from the setting or from a key file created on first start, readable by its owner alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from worpen_core.pipelines.ports import SecretCipher
from worpen_core.shared.errors import InvalidInput
from worpen_infra.crypto import FernetSecretCipher


@pytest.fixture
def cipher() -> SecretCipher:
    return FernetSecretCipher(Fernet.generate_key())


@pytest.mark.parametrize("value", ["s3cret", "", "pässwörd ✓ 秘密 🔑", "line one\nline two", "x" * 10_000])
def test_a_value_comes_back_as_sealed(cipher: SecretCipher, value: str) -> None:
    sealed = cipher.seal(value)

    assert cipher.open(sealed) == value
    if value:
        assert value.encode() not in sealed


def test_the_same_value_seals_differently_each_time(cipher: SecretCipher) -> None:
    assert cipher.seal("s3cret") != cipher.seal("s3cret")


def test_another_key_cannot_open_it(cipher: SecretCipher) -> None:
    sealed = cipher.seal("s3cret")
    other: SecretCipher = FernetSecretCipher(Fernet.generate_key())

    with pytest.raises(InvalidInput, match="sealed with another key or altered"):
        other.open(sealed)


def test_an_altered_token_is_refused(cipher: SecretCipher) -> None:
    sealed = bytearray(cipher.seal("s3cret"))
    sealed[-10] = ord("A") if sealed[-10] != ord("A") else ord("B")

    with pytest.raises(InvalidInput, match="sealed with another key or altered"):
        cipher.open(bytes(sealed))
    with pytest.raises(InvalidInput):
        cipher.open(b"not a token at all")


def test_the_key_file_is_created_owner_only_on_first_start_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "secrets.key"

    first = FernetSecretCipher.load_or_create_key(None, str(key_file))
    again = FernetSecretCipher.load_or_create_key(None, str(key_file))

    assert first == again
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert os.listdir(key_file.parent) == ["secrets.key"]
    sealed = FernetSecretCipher(first).seal("s3cret")
    assert FernetSecretCipher(again).open(sealed) == "s3cret"


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets.key"
    FernetSecretCipher.load_or_create_key(None, str(key_file))
    key_file.chmod(0o640)

    with pytest.raises(ValueError, match="chmod 600"):
        FernetSecretCipher.load_or_create_key(None, str(key_file))


def test_a_key_file_that_holds_no_key_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets.key"
    key_file.write_text("not a key\n")
    key_file.chmod(0o600)

    with pytest.raises(ValueError, match="is not a Fernet key"):
        FernetSecretCipher.load_or_create_key(None, str(key_file))


def test_the_setting_wins_over_the_key_file(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    key_file = tmp_path / "secrets.key"

    assert FernetSecretCipher.load_or_create_key(key.decode(), str(key_file)) == key
    assert not key_file.exists()


@pytest.mark.parametrize("key", ["short", "x" * 44, "é" * 44, Fernet.generate_key().decode()[:-2]])
def test_a_bad_setting_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="WORPEN_SECRETS_KEY is not a Fernet key"):
        FernetSecretCipher.load_or_create_key(key, str(tmp_path / "secrets.key"))
