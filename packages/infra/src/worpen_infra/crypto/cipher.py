"""SecretCipher on `cryptography`'s Fernet: AES-128-CBC with an HMAC-SHA256 over the token, so a secret
sealed with another key, or altered at rest, is refused rather than read wrong.

The key comes from a setting (WORPEN_SECRETS_KEY) or from a key file that the first start creates, readable
by its owner alone."""

from __future__ import annotations

import os
import secrets
import stat

from cryptography.fernet import Fernet, InvalidToken

from worpen_core.shared.errors import InvalidInput


class FernetSecretCipher:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode("utf-8"))

    def open(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(sealed).decode("utf-8")
        except InvalidToken:
            raise InvalidInput("cannot decrypt: the secret was sealed with another key or altered") from None

    @classmethod
    def load_or_create_key(cls, key: str | None, key_file: str) -> bytes:
        """The key given, else the one in `key_file`, else a new one written there (mode 0600).

        A new key is written to a file created with O_EXCL and mode 0600 at once (never readable by others,
        even for a moment), then linked to `key_file`: the link either appears whole or fails because another
        server starting at the same time linked its key first, which is then the one used. Raises ValueError
        for a key that is not a Fernet key, or a key file that others may read."""
        if key:
            return _valid(key.strip().encode("ascii", errors="replace"), "WORPEN_SECRETS_KEY")
        try:
            return _read(key_file)
        except FileNotFoundError:
            pass
        directory = os.path.dirname(os.path.abspath(key_file))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        created = Fernet.generate_key()
        draft = os.path.join(directory, f".{os.path.basename(key_file)}.{secrets.token_hex(8)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(created + b"\n")
                file.flush()
                os.fsync(file.fileno())
            os.link(draft, key_file)
        except FileExistsError:
            return _read(key_file)
        finally:
            os.unlink(draft)
        return created


def _read(key_file: str) -> bytes:
    mode = os.stat(key_file).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"the secrets key file {key_file} may be read or written by others "
            f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it"
        )
    with open(key_file, "rb") as file:
        return _valid(file.read().strip(), f"the secrets key file {key_file}")


def _valid(key: bytes, origin: str) -> bytes:
    try:
        Fernet(key)
    except ValueError:
        raise ValueError(
            f"{origin} is not a Fernet key (32 bytes in url-safe base64, as Fernet.generate_key() makes)"
        ) from None
    return key
