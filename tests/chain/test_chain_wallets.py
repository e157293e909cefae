import pytest

from distrain.chain import ChainError, create_wallet, load_hotkey, load_wallet
from distrain.chain.base import verify_signature


def test_create_is_offline_and_keeps_existing_keys(tmp_path):
    path = str(tmp_path / "wallets")
    wallet = create_wallet(path, "alice", "hot")
    again = create_wallet(path, "alice", "hot")
    assert again.hotkey.ss58_address == wallet.hotkey.ss58_address
    assert again.coldkeypub.ss58_address == wallet.coldkeypub.ss58_address
    assert (tmp_path / "wallets" / "alice" / "hotkeys" / "hot").exists()


def test_loaded_hotkey_signs(tmp_path):
    path = str(tmp_path)
    address = create_wallet(path, "bob").hotkey.ss58_address
    hotkey = load_hotkey(path, "bob")
    assert hotkey.ss58_address == address
    assert verify_signature(address, b"hello", hotkey.sign(b"hello"))


def test_missing_wallet_names_the_file(tmp_path):
    create_wallet(str(tmp_path), "carol")
    with pytest.raises(ChainError, match="hotkeys/other"):
        load_hotkey(str(tmp_path), "carol", "other")
    with pytest.raises(ChainError, match="coldkeypub.txt"):
        load_wallet(str(tmp_path), "nobody")
