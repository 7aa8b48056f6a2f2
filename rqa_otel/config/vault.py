"""ConfigVault: encrypted values in settings files.

A value is written as a versioned envelope::

    ENC[v1:fernet:<key id>:<Fernet token>]

The key id is the first 8 hex digits of the SHA-256 of the key, so a reader
knows which key a value needs without trying them all, and ``verify`` can
tell which values still use an old key. Keys come from ``RQA_VAULT_KEYS``
(comma-separated, primary first) or from the key file named by
``RQA_VAULT_KEY_FILE`` (one key a line, primary first; refused unless only
its owner can read it). New values are encrypted with the primary key;
every key decrypts (MultiFernet), which is what makes rotation possible.

Values are decrypted once, when the settings are loaded. It fails closed: an
envelope that cannot be decrypted is an error, never passed on as text.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from rqa_otel.config.permissions import UnsafePermissions, read_checked

KEYS_VARIABLE = "RQA_VAULT_KEYS"
KEY_FILE_VARIABLE = "RQA_VAULT_KEY_FILE"
ENVELOPE = re.compile(r"ENC\[v1:fernet:([0-9a-f]{8}):([A-Za-z0-9_=-]+)\]")
_ANY_ENVELOPE = re.compile(r"ENC\[[^\]\s]*\]?")


class VaultError(ValueError):
    """A value cannot be decrypted, or the keys cannot be loaded."""


def key_id(key: bytes | str) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()[:8]


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("ENC[")


@dataclass(frozen=True)
class ConfigVault:
    keys: tuple[bytes, ...] = field(repr=False)
    """Fernet keys, primary first (never in a repr, so never in a traceback)."""

    def __post_init__(self) -> None:
        if not self.keys:
            raise VaultError(f"no vault key: set {KEYS_VARIABLE} or {KEY_FILE_VARIABLE} (make one: rqa-otel vault keygen)")
        for index, key in enumerate(self.keys):
            try:
                _fernet().Fernet(key)
            except (ValueError, TypeError):
                raise VaultError(
                    f"vault key #{index + 1} is not a Fernet key (32 bytes, url-safe base64; make one: rqa-otel vault keygen)"
                ) from None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "ConfigVault | None":
        """The vault the environment configures, or None when it names no key."""
        environ = os.environ if environ is None else environ
        text = environ.get(KEYS_VARIABLE, "").strip()
        source = KEYS_VARIABLE
        if not text and environ.get(KEY_FILE_VARIABLE, "").strip():
            source = environ[KEY_FILE_VARIABLE].strip()
            try:
                text = read_checked(source, secret=True).decode("ascii").replace("\n", ",")
            except UnicodeDecodeError:
                raise VaultError(f"vault key file {source!r} is not text") from None
            except FileNotFoundError:
                raise VaultError(f"vault key file {source!r} ({KEY_FILE_VARIABLE}) does not exist") from None
            except UnsafePermissions as exc:
                raise VaultError(f"vault key file ({KEY_FILE_VARIABLE}): {exc}") from None
            except OSError as exc:  # a directory, no permission to read
                raise VaultError(
                    f"vault key file {source!r} ({KEY_FILE_VARIABLE}) cannot be read: {exc.strerror or exc}"
                ) from None
        if not text:
            return None
        keys = tuple(part.strip().encode("ascii") for part in text.split(",") if part.strip() and not part.strip().startswith("#"))
        try:
            return cls(keys)
        except VaultError as exc:
            raise VaultError(f"{exc} (from {source})") from None

    @property
    def primary_id(self) -> str:
        return key_id(self.keys[0])

    def encrypt(self, plaintext: str) -> str:
        token = _fernet().Fernet(self.keys[0]).encrypt(plaintext.encode("utf-8")).decode("ascii")
        return f"ENC[v1:fernet:{self.primary_id}:{token}]"

    def decrypt(self, envelope: str) -> str:
        kid, token = self._parse(envelope)
        fernet = self._by_id().get(kid)
        if fernet is None:
            raise VaultError(f"encrypted with key {kid}, which is not among the loaded keys ({', '.join(self._by_id())})")
        try:
            return fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (_fernet().InvalidToken, UnicodeDecodeError):
            raise VaultError(f"cannot be decrypted with key {kid}: the ciphertext is corrupt or was changed") from None

    def rotate(self, envelope: str) -> str:
        """The same value under the primary key (MultiFernet.rotate)."""
        kid, token = self._parse(envelope)
        self.decrypt(envelope)  # the precise error when it cannot be read
        rotated = _fernet().MultiFernet([_fernet().Fernet(k) for k in self.keys]).rotate(token.encode("ascii")).decode("ascii")
        return f"ENC[v1:fernet:{self.primary_id}:{rotated}]"

    @staticmethod
    def key_of(envelope: str) -> str:
        return ConfigVault._parse(envelope)[0]

    @staticmethod
    def _parse(envelope: str) -> tuple[str, str]:
        match = ENVELOPE.fullmatch(envelope.strip())
        if match is None:
            raise VaultError("malformed ENC[...] value; expected ENC[v1:fernet:<key id>:<token>] as `rqa-otel vault encrypt` writes it")
        return match.group(1), match.group(2)

    def _by_id(self) -> dict[str, Any]:
        return {key_id(key): _fernet().Fernet(key) for key in self.keys}


def decrypt_values(
    flat: Mapping[str, Any], vault: "ConfigVault | None", where: Callable[[str], str]
) -> tuple[dict[str, Any], frozenset[str], tuple[str, ...], list[str]]:
    """Decrypt every ENC[...] string in ``flat`` (also inside lists and maps).

    Returns (values, secret keys, plaintexts, errors); an error names the
    key and ``where(key)`` (its file or variable). Fails closed: a key with an
    undecryptable value is reported, never passed on.
    """
    values: dict[str, Any] = {}
    secret_keys: set[str] = set()
    plaintexts: list[str] = []
    errors: list[str] = []

    def visit(key: str, value: Any) -> Any:
        if isinstance(value, str) and is_encrypted(value):
            secret_keys.add(key)
            if vault is None:
                raise VaultError(f"is encrypted but no vault key is set ({KEYS_VARIABLE} or {KEY_FILE_VARIABLE})")
            plaintext = vault.decrypt(value)
            plaintexts.append(plaintext)
            return plaintext
        if isinstance(value, Mapping):
            return {k: visit(key, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [visit(key, v) for v in value]
        return value

    for key, value in flat.items():
        try:
            values[key] = visit(key, value)
        except VaultError as exc:
            errors.append(f"setting {key} (from {where(key)}) {exc}")
    return values, frozenset(secret_keys), tuple(plaintexts), errors


def rotate_text(text: str, vault: ConfigVault) -> tuple[str, int]:
    """Every envelope in a file's text re-encrypted under the primary key;
    comments and layout stay as they are. Returns (text, values rotated)."""
    count = 0

    def replace(match: re.Match) -> str:
        nonlocal count
        count += 1
        return vault.rotate(match.group(0))

    return ENVELOPE.sub(replace, text), count


def envelopes_in(text: str) -> list[str]:
    """Every ENC[...] in a file's text, malformed ones included (for verify)."""
    return [match.group(0) for match in _ANY_ENVELOPE.finditer(text)]


def _fernet():
    """cryptography's Fernet module, imported on first use: only settings
    with encrypted values (and `rqa-otel vault`) need it, and it costs a
    program's start-up ~30 ms."""
    import cryptography.fernet

    return cryptography.fernet
