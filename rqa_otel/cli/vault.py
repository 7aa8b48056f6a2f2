"""``rqa-otel vault``: make keys, encrypt, decrypt, rotate and verify values."""

from __future__ import annotations

import getpass
import os
import sys
import tempfile
from pathlib import Path

from rqa_otel.config.loader import parse_file
from rqa_otel.config.permissions import UnsafePermissions, read_checked
from rqa_otel.config.vault import (
    KEY_FILE_VARIABLE,
    KEYS_VARIABLE,
    ConfigVault,
    VaultError,
    envelopes_in,
    key_id,
    rotate_text,
)

_KEYS_HELP = (
    f"Keys come from {KEYS_VARIABLE} (comma-separated Fernet keys, primary first) or from the file named by "
    f"{KEY_FILE_VARIABLE} (one key a line, primary first, mode 600). New values use the primary key; "
    "every key decrypts."
)


def add_vault_parser(commands) -> None:
    vault = commands.add_parser(
        "vault",
        help="encrypted settings values: keygen, encrypt, decrypt, rotate, verify",
        description="Manage ENC[...] values in settings files (Fernet). " + _KEYS_HELP,
        epilog=(
            "workflow: rqa-otel vault keygen --key-file /etc/rqa/vault.key; "
            "export RQA_VAULT_KEY_FILE=/etc/rqa/vault.key; "
            "rqa-otel vault encrypt --path export.otlp.headers.api-key >> .secrets.yaml (then edit into place); "
            "rqa-otel vault verify settings.yaml .secrets.yaml"
        ),
    )
    actions = vault.add_subparsers(title="actions", metavar="ACTION")

    keygen = actions.add_parser(
        "keygen", help="make a new key",
        description=(
            "Print a new Fernet key, or with --key-file add it as the new primary key of that file "
            "(created with mode 600; older keys stay, so existing values still decrypt until you rotate)."
        ),
    )
    keygen.add_argument("--key-file", metavar="PATH", help="add the key to this file instead of printing it")
    keygen.set_defaults(handler=_keygen)

    encrypt = actions.add_parser(
        "encrypt", help="encrypt one value (read from stdin or a prompt, never from the command line)",
        description=(
            "Encrypt a value with the primary key and print it as YAML at --path, ready to paste into "
            "a settings file. The value is read from standard input (one trailing newline removed) or, on a "
            "terminal, from a prompt that does not echo; never from the command line, where other users "
            "and shell history could see it."
        ),
        epilog="example: printf %s \"$TOKEN\" | rqa-otel vault encrypt --path export.otlp.headers.api-key",
    )
    encrypt.add_argument("--path", required=True, metavar="KEY", help="dotted setting key, e.g. export.otlp.headers.api-key")
    encrypt.set_defaults(handler=_encrypt)

    decrypt = actions.add_parser(
        "decrypt", help="print the decrypted values of a settings file",
        description="Print `dotted.key: value` for every encrypted value in FILE (or only --path).",
    )
    decrypt.add_argument("file", metavar="FILE")
    decrypt.add_argument("--path", metavar="KEY", help="only this dotted key")
    decrypt.set_defaults(handler=_decrypt)

    rotate = actions.add_parser(
        "rotate", help="re-encrypt every value of a file with the primary key",
        description=(
            "Re-encrypt every ENC[...] value in FILE with the primary key (comments and layout kept). "
            "Prints the result, or with --in-place replaces FILE atomically, keeping its mode. "
            "Rotation: keygen --key-file (new primary), rotate --in-place every file, verify, then remove "
            "the old key from the key file."
        ),
    )
    rotate.add_argument("file", metavar="FILE")
    rotate.add_argument("--in-place", action="store_true", help="replace FILE instead of printing")
    rotate.set_defaults(handler=_rotate)

    verify = actions.add_parser(
        "verify", help="check that every value decrypts and secrets files are private",
        description=(
            "Check that every ENC[...] value in each FILE decrypts with the loaded keys, say which still "
            "use an old key, and refuse .secrets.* files that others can read. Exit status 1 on any problem."
        ),
    )
    verify.add_argument("files", nargs="+", metavar="FILE")
    verify.set_defaults(handler=_verify)

    vault.set_defaults(handler=lambda args: (vault.print_help(), 2)[1])


def _vault() -> ConfigVault:
    vault = ConfigVault.from_environment()
    if vault is None:
        raise VaultError(f"no vault key: set {KEYS_VARIABLE} or {KEY_FILE_VARIABLE} (make one: rqa-otel vault keygen)")
    return vault


def _fail(message: str) -> int:
    print(f"rqa-otel vault: {message}", file=sys.stderr)
    return 1


def _keygen(args) -> int:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode("ascii")
    if not args.key_file:
        print(key)
        print(f"key id {key_id(key)}; keep it out of settings files and shell history", file=sys.stderr)
        return 0
    path = Path(args.key_file)
    old = ""
    if path.exists():
        try:
            old = read_checked(path, secret=True).decode("ascii")
        except UnsafePermissions as exc:
            return _fail(str(exc))
        except (OSError, UnicodeDecodeError) as exc:
            return _fail(f"cannot add a key to {str(path)!r}: {getattr(exc, 'strerror', None) or exc}")
    try:
        _write_private(path, key + "\n" + old)
    except OSError as exc:
        return _fail(f"cannot write key file {str(path)!r}: {exc.strerror or exc}")
    print(f"added key {key_id(key)} as the primary key of {path}" + (" (older keys kept)" if old.strip() else ""),
          file=sys.stderr)
    return 0


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomically, never readable by others at any moment."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _encrypt(args) -> int:
    try:
        vault = _vault()
    except VaultError as exc:
        return _fail(str(exc))
    if sys.stdin.isatty():
        value = getpass.getpass(f"value for {args.path} (not echoed): ")
    else:
        value = sys.stdin.read()
        if value.endswith("\n"):
            value = value[:-1]
    if not value:
        return _fail("empty value; nothing encrypted")
    parts = args.path.split(".")
    lines = [f"{'  ' * depth}{part}:" for depth, part in enumerate(parts[:-1])]
    lines.append(f"{'  ' * (len(parts) - 1)}{parts[-1]}: {vault.encrypt(value)}")
    print("\n".join(lines))
    return 0


def _file_values(path: str) -> dict[str, str]:
    """Every encrypted value of a settings file by dotted key."""
    secret = os.path.basename(path).startswith(".secrets")
    tree = parse_file(Path(path), read_checked(path, secret=secret), secret)
    found: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{prefix}{index}.")
        elif isinstance(node, str) and node.lstrip().startswith("ENC["):
            found[prefix[:-1]] = node

    walk(tree, "")
    return found


def _decrypt(args) -> int:
    try:
        vault = _vault()
        values = _file_values(args.file)
        if args.path:
            if args.path not in values:
                return _fail(f"{args.file} has no encrypted value at {args.path} (encrypted: {', '.join(values) or 'none'})")
            values = {args.path: values[args.path]}
        for key, envelope in values.items():
            try:
                print(f"{key}: {vault.decrypt(envelope)}")
            except VaultError as exc:
                raise VaultError(f"{args.file}: {key} {exc}") from None
    except Exception as exc:  # settings, permission and vault errors alike
        return _fail(str(exc))
    return 0


def _rotate(args) -> int:

    try:
        vault = _vault()
        path = Path(args.file)
        secret = path.name.startswith(".secrets")
        text = read_checked(path, secret=secret).decode("utf-8")
        rotated, count = rotate_text(text, vault)
    except Exception as exc:
        return _fail(f"{args.file}: {exc}")
    if args.in_place:
        _write_private(path, rotated, mode=os.stat(path).st_mode & 0o777)
        print(f"{path}: {count} value(s) re-encrypted with key {vault.primary_id}", file=sys.stderr)
    else:
        sys.stdout.write(rotated)
    return 0


def _verify(args) -> int:

    try:
        vault = _vault()
    except VaultError as exc:
        return _fail(str(exc))
    problems = 0
    for name in args.files:
        try:
            secret = os.path.basename(name).startswith(".secrets")
            text = read_checked(name, secret=secret).decode("utf-8")
        except Exception as exc:
            print(f"FAIL {name}: {exc}")
            problems += 1
            continue
        envelopes = envelopes_in(text)
        old_keys = 0
        for envelope in envelopes:
            try:
                vault.decrypt(envelope)
                old_keys += ConfigVault.key_of(envelope) != vault.primary_id
            except VaultError as exc:
                print(f"FAIL {name}: {envelope[:24]}...: {exc}")
                problems += 1
        note = f"; {old_keys} under an older key (run rotate --in-place)" if old_keys else ""
        print(f"ok   {name}: {len(envelopes)} encrypted value(s) decrypt{note}")
    return 1 if problems else 0
