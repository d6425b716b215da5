"""Name the BitTorrent client behind a peer_id from its prefix, for the dashboard's client mix.

Three conventions cover nearly every client seen today (BEP 20):

- Azureus style, ``-XXvvvv-``: two letters name the client, four characters its version
  (``-TR2940-`` is Transmission 2.94, ``-qB4520-`` qBittorrent 4.5.2);
- Mainline style, ``M7-2-2--``: a letter, then numbers separated by dashes;
- Shadow style, ``S58B-----``: a letter, then up to five version characters, each a number
  from 0 to 63 (``0-9``, ``A-Z``, ``a-z``, ``.``, ``-``), padded with dashes.

aria2 writes ``A2-1-36-0-``. Anything else is ``unknown``. Pure: bytes in, a record out.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Client(NamedTuple):
    """A decoded client: its name and version (``""`` when the id does not say)."""

    name: str
    version: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name


UNKNOWN = Client("unknown", "")

# Version styles of Azureus-style ids.
_PLAIN = 0  # four version characters, one component each: -qB4520- is 4.5.2
_THREE = 1  # three components and a build letter: -UT355W- is 3.5.5
_TRANSMISSION = 2  # Transmission's own scheme, see _transmission_version

# Two-letter Azureus-style codes. Case matters: "lt" is rakshasa's libTorrent (rTorrent)
# and "LT" is Arvid Norberg's libtorrent (rasterbar), which many clients build on.
AZUREUS_CLIENTS: dict[bytes, tuple[str, int]] = {
    b"7T": ("aTorrent", _PLAIN),
    b"AG": ("Ares", _PLAIN),
    b"AR": ("Arctic", _PLAIN),
    b"AZ": ("Vuze", _PLAIN),
    b"BB": ("BitBuddy", _PLAIN),
    b"BC": ("BitComet", _PLAIN),
    b"BF": ("Bitflu", _PLAIN),
    b"BG": ("BTG", _PLAIN),
    b"BI": ("BiglyBT", _PLAIN),
    b"BL": ("BitLord", _PLAIN),
    b"BN": ("Baidu Netdisk", _PLAIN),
    b"BR": ("BitRocket", _PLAIN),
    b"BT": ("BitTorrent", _THREE),
    b"BW": ("BitWombat", _PLAIN),
    b"CD": ("Enhanced CTorrent", _PLAIN),
    b"CT": ("CTorrent", _PLAIN),
    b"DE": ("Deluge", _PLAIN),
    b"EB": ("EBit", _PLAIN),
    b"FD": ("Free Download Manager", _PLAIN),
    b"FG": ("FlashGet", _PLAIN),
    b"FW": ("FrostWire", _PLAIN),
    b"FX": ("Freebox BitTorrent", _PLAIN),
    b"GS": ("GSTorrent", _PLAIN),
    b"HL": ("Halite", _PLAIN),
    b"KG": ("KGet", _PLAIN),
    b"KT": ("KTorrent", _PLAIN),
    b"LH": ("LH-ABC", _PLAIN),
    b"LP": ("Lphant", _PLAIN),
    b"LT": ("libtorrent (rasterbar)", _PLAIN),
    b"LW": ("LimeWire", _PLAIN),
    b"lt": ("libtorrent (rakshasa)", _PLAIN),
    b"MG": ("MediaGet", _PLAIN),
    b"ML": ("MLDonkey", _PLAIN),
    b"MO": ("MonoTorrent", _PLAIN),
    b"MR": ("Miro", _PLAIN),
    b"NX": ("Net Transport", _PLAIN),
    b"PD": ("Pando", _PLAIN),
    b"PI": ("PicoTorrent", _PLAIN),
    b"QD": ("QQDownload", _PLAIN),
    b"QT": ("Qt 4 Torrent", _PLAIN),
    b"qB": ("qBittorrent", _PLAIN),
    b"RT": ("Retriever", _PLAIN),
    b"SD": ("Thunder", _PLAIN),
    b"ST": ("SymTorrent", _PLAIN),
    b"SZ": ("Shareaza", _PLAIN),
    b"TL": ("Tribler", _PLAIN),
    b"TR": ("Transmission", _TRANSMISSION),
    b"TS": ("Torrentstorm", _PLAIN),
    b"TT": ("TuoTu", _PLAIN),
    b"UE": ("\u00b5Torrent Embedded", _THREE),
    b"UM": ("\u00b5Torrent Mac", _THREE),
    b"UT": ("\u00b5Torrent", _THREE),
    b"UW": ("\u00b5Torrent Web", _THREE),
    b"VG": ("Vagaa", _PLAIN),
    b"WD": ("WebTorrent Desktop", _PLAIN),
    b"WW": ("WebTorrent", _PLAIN),
    b"XL": ("Xunlei", _PLAIN),
    b"XT": ("XanTorrent", _PLAIN),
    b"XX": ("Xtorrent", _PLAIN),
    b"ZT": ("ZipTorrent", _PLAIN),
}

# Shadow-style first letters.
SHADOW_CLIENTS: dict[int, str] = {
    ord("A"): "ABC",
    ord("O"): "Osprey Permaseed",
    ord("Q"): "BTQueue",
    ord("R"): "Tribler",
    ord("S"): "Shadow",
    ord("T"): "BitTornado",
    ord("U"): "UPnP NAT Bit Torrent",
}

_SHADOW_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-"
_SHADOW_VALUE = {c: i for i, c in enumerate(_SHADOW_DIGITS)}
_MAINLINE = re.compile(rb"M(\d{1,3})-(\d{1,3})-(\d{1,3})-")
_ARIA2 = re.compile(rb"A2-(\d{1,3})-(\d{1,3})-(\d{1,3})-")


def _digit(char: int) -> int | None:
    """One Azureus-style version character: ``0-9`` then ``A-Z`` for 10 to 35."""
    if 48 <= char <= 57:
        return char - 48
    if 65 <= char <= 90:
        return char - 55
    return None


def _plain_version(chars: bytes) -> str:
    parts = [_digit(c) for c in chars]
    if any(p is None for p in parts):
        return ""
    numbers = [p for p in parts if p is not None]
    while len(numbers) > 3 and numbers[-1] == 0:
        numbers.pop()
    return ".".join(map(str, numbers))


def _transmission_version(chars: bytes) -> str:
    """Transmission: ``0006`` is 0.6, ``0072`` 0.72, ``2940`` 2.94 (up to 3.00, a major digit
    and two minor digits), ``4050`` 4.0.5 (since 4.0: one digit each). A final ``Z`` or
    ``X`` marks a development build, ``B`` a beta."""
    text = chars.decode("ascii")
    if not text[:3].isdigit():
        return ""
    tail = text[3]
    suffix = {"Z": "+", "X": "+", "B": " beta"}.get(tail, "")
    if not suffix and not tail.isdigit():
        return ""
    if text[:3] == "000":
        return f"0.{text[3]}"
    if text[0] == "0":
        return f"0.{text[2:4]}"
    if text[0] in "123":
        return f"{text[0]}.{text[1:3]}{suffix}"
    return f"{text[0]}.{text[1]}.{text[2]}{suffix}"


def _azureus(peer_id: bytes) -> Client | None:
    if len(peer_id) < 8 or peer_id[0] != 0x2D or peer_id[7] != 0x2D:
        return None
    known = AZUREUS_CLIENTS.get(peer_id[1:3])
    if known is None:
        return None
    name, style = known
    chars = peer_id[3:7]
    if not chars.isascii() or not chars.isalnum():
        return Client(name, "")
    if style == _TRANSMISSION:
        return Client(name, _transmission_version(chars))
    if style == _THREE:
        return Client(name, _plain_version(chars[:3]))
    return Client(name, _plain_version(chars))


def _shadow(peer_id: bytes) -> Client | None:
    name = SHADOW_CLIENTS.get(peer_id[0]) if peer_id else None
    if name is None or len(peer_id) < 9 or peer_id[6:9] != b"---":
        return None
    version = peer_id[1:6].rstrip(b"-")
    if not version or any(c not in _SHADOW_VALUE for c in version):
        return None
    return Client(name, ".".join(str(_SHADOW_VALUE[c]) for c in version))


def decode(peer_id: bytes) -> Client:
    """The client a peer_id names, or :data:`UNKNOWN`."""
    found = _azureus(peer_id)
    if found is not None:
        return found
    match = _MAINLINE.match(peer_id)
    if match is not None:
        return Client("BitTorrent (Mainline)", ".".join(str(int(g)) for g in match.groups()))
    match = _ARIA2.match(peer_id)
    if match is not None:
        return Client("aria2", ".".join(str(int(g)) for g in match.groups()))
    found = _shadow(peer_id)
    if found is not None:
        return found
    return UNKNOWN
