import pytest

from distrain.chain import ChainError, create_wallet, load_hotkey, load_wallet
from distrain.keys import seeded_hotkey_address, verify_signature


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


def test_seeded_wallets_are_reproducible_and_match_the_keyless_address(tmp_path):
    first = create_wallet(str(tmp_path / "a"), "miner-0", seed="bench")
    second = create_wallet(str(tmp_path / "b"), "miner-0", seed="bench")
    other = create_wallet(str(tmp_path / "c"), "miner-1", seed="bench")
    assert first.hotkey.ss58_address == second.hotkey.ss58_address != other.hotkey.ss58_address
    assert first.coldkeypub.ss58_address == second.coldkeypub.ss58_address != first.hotkey.ss58_address
    # `bench rounds` derives the same hotkeys without writing wallets or importing the SDK.
    assert seeded_hotkey_address("bench", "miner-0") == first.hotkey.ss58_address
    assert seeded_hotkey_address("other", "miner-0") != first.hotkey.ss58_address
