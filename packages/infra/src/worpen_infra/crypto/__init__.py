"""The secret cipher port on cryptography's Fernet: pipeline secrets sealed at rest."""

from worpen_infra.crypto.cipher import FernetSecretCipher

__all__ = ["FernetSecretCipher"]
