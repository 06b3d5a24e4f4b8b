"""Generated values for the labelled corpus: valid ones of every kind, and near misses.

Every valid value is checked by the library that defines it (python-stdnum, phonenumbers)
before it is used, so the corpus never labels an invalid value as PII by mistake.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string

import phonenumbers
from stdnum import iban, luhn, numdb
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.iso7064 import mod_11_10
from stdnum.nl import bsn
from stdnum.us import ssn

Values = tuple[list[str], list[str]]  # valid, near misses

CARD_PREFIXES = {  # a prefix of each scheme, and its length
    "visa": ("4", 16), "visa13": ("4", 13), "mastercard": ("53", 16), "mc2": ("2221", 16),
    "amex": ("37", 15), "discover": ("6011", 16), "jcb": ("3530", 16), "diners": ("36", 14),
    "unionpay": ("62", 19), "maestro": ("6759", 16),
}


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + luhn.calc_check_digit(body)


def _group(digits: str, sizes: tuple[int, ...], sep: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(digits[at : at + size])
        at += size
    if at < len(digits):
        parts.append(digits[at:])
    return sep.join(parts)


def cards(rng: random.Random) -> Values:
    """Cards of every scheme in their printed layouts; near misses: one digit changed, an
    unknown issuer with a valid Luhn digit, too short."""
    valid, near = [], []
    for prefix, length in CARD_PREFIXES.values():
        for layout in range(3):
            digits = _luhn_complete(rng, prefix, length)
            if layout == 0:
                valid.append(digits)
            elif length == 15:
                valid.append(_group(digits, (4, 6, 5), " " if layout == 1 else "-"))
            else:  # 4-4-4-4 and the rest (a 19-digit card: 4-4-4-4-3)
                valid.append(_group(digits, (4, 4, 4, 4), " " if layout == 1 else "-"))
        changed = list(digits)
        changed[5] = str((int(changed[5]) + 3) % 10)
        near.append("".join(changed))
    near += [_luhn_complete(rng, "1", 16), _luhn_complete(rng, "9", 16)]  # no such issuer
    near.append(_luhn_complete(rng, "4", 12))  # too short for any card
    near.append(_group(_luhn_complete(rng, "7", 16), (4, 4, 4, 4), " "))
    return valid, near


def _bban(rng: random.Random, spec: str) -> str:
    out = []
    for size, kind in re.findall(r"(\d+)!?([nac])", spec):
        pool = {"n": string.digits, "a": string.ascii_uppercase,
                "c": string.ascii_uppercase + string.digits}[kind]
        out.append("".join(rng.choice(pool) for _ in range(int(size))))
    return "".join(out)


def ibans(rng: random.Random) -> Values:
    """IBANs of ten countries, compact and in groups of four; near misses: a wrong check,
    a character short, an unknown country."""
    db = numdb.get("iban")
    valid, near = [], []
    for country in ("DE", "GB", "FR", "NL", "ES", "IT", "BE", "AT", "CH", "PL"):
        spec = db.info(country)[0][1]["bban"]
        for grouped in (False, True):
            bban = _bban(rng, spec)
            number = country + iban.calc_check_digits(country + "00" + bban) + bban
            assert iban.is_valid(number, check_country=False)
            valid.append(" ".join(re.findall(".{1,4}", number)) if grouped else number)
        wrong = number[:2] + f"{(int(number[2:4]) + 1) % 100:02d}" + number[4:]
        near.append(wrong)
        near.append(" ".join(re.findall(".{1,4}", number[:-1])))
    near.append("XX12" + "3" * 16)
    return valid, near


def emails(rng: random.Random) -> Values:
    """Addresses of several shapes; near misses without a real domain or local part."""
    names = ["anna.schmidt", "j.doe", "pierre-luc.martin", "m.o'brien", "finance+invoices",
             "Ops_Team", "k.nakamura"]
    domains = ["example.com", "contoso.co.uk", "mail.example-bank.de", "fin.example.org",
               "EXAMPLE.NL"]
    valid = [f"{rng.choice(names)}@{rng.choice(domains)}" for _ in range(12)]
    near = ["anna.schmidt@localhost", "j.doe@intranet", "@treasury_team", "support at example.com",
            "user@example.c", "name@@example.com", "ceo@"]
    return valid, near


def phones(rng: random.Random) -> Values:
    """Mobile and fixed numbers of eight countries, international (all) and national (the
    default regions); near misses: too short, or not a number in any plan."""
    fmt = phonenumbers.PhoneNumberFormat
    valid: list[str] = []
    for region in ("GB", "DE", "FR", "NL", "US", "ES", "IT", "CH"):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            number = example = phonenumbers.example_number_for_type(region, kind)
            for _ in range(20):  # vary the last digits, keep only what the plan calls valid
                national = str(example.national_number)
                varied = phonenumbers.parse(
                    f"+{example.country_code}{national[:-2]}{rng.randint(0, 99):02d}"
                )
                if phonenumbers.is_valid_number(varied):
                    number = varied
                    break
            assert phonenumbers.is_valid_number(number)
            valid.append(phonenumbers.format_number(number, fmt.INTERNATIONAL))
            if region in ("GB", "DE", "FR", "NL", "US"):
                valid.append(phonenumbers.format_number(number, fmt.NATIONAL))
    valid.append(phonenumbers.format_number(number, fmt.E164))
    near = ["+44 20 7946", "+1 123 456 7890", "+49 0", "555-0199", "+999 1234 5678"]
    return valid, near


def _ssn(rng: random.Random) -> str:
    while True:
        area = rng.choice([rng.randint(1, 665), rng.randint(667, 899)])
        number = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
        if ssn.is_valid(number):
            return number


def _nino(rng: random.Random) -> str:
    first, second = "ABCEGHJKLMNOPRSTWXYZ", "ABCEGHJKLMNPRSTWXYZ"
    while True:
        prefix = rng.choice(first) + rng.choice(second)
        if prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            digits = "".join(rng.choice(string.digits) for _ in range(6))
            return prefix + digits + rng.choice("ABCD")


def _idnr(rng: random.Random) -> str:
    while True:
        body = str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(9))
        number = body + mod_11_10.calc_check_digit(body)
        if idnr.is_valid(number):
            return number


def _nir(rng: random.Random) -> str:
    body = (f"{rng.randint(1, 2)}{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}"
            f"{rng.randint(1, 95):02d}{rng.randint(1, 990):03d}{rng.randint(1, 999):03d}")
    number = body + nir.calc_check_digits(body)
    assert nir.is_valid(number)
    return number


def _bsn(rng: random.Random) -> str:
    while True:
        body = "".join(rng.choice(string.digits) for _ in range(8))
        for last in string.digits:
            if bsn.is_valid(body + last) and body[0] != "0":
                return body + last


def national(rng: random.Random) -> Values:
    """SSN, NINO, Steuer-ID, NIR, BSN, DNI, NIE, with the keyword a weak check needs;
    near misses: never-issued SSN ranges, bad NINO letters, wrong check digits."""
    valid, near = [], []
    for _ in range(3):
        s = _ssn(rng)
        valid += [f"{s[:3]}-{s[3:5]}-{s[5:]}", f"{s[:3]} {s[3:5]} {s[5:]}", f"SSN {s}"]
        n = _nino(rng)
        valid += [n, f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:8]} {n[8]}"]
        t = _idnr(rng)
        valid += [f"Steuer-ID {t}", f"Steuer-ID {t[:2]} {t[2:5]} {t[5:8]} {t[8:]}"]
        r = _nir(rng)
        valid += [r, f"{r[0]} {r[1:3]} {r[3:5]} {r[5:7]} {r[7:10]} {r[10:13]} {r[13:]}"]
        b = _bsn(rng)
        valid.append(f"BSN {b}")
        d = f"{rng.randint(10**7, 10**8 - 1)}"
        valid.append(d + dni.calc_check_digit(d))
        e = rng.choice("XYZ") + f"{rng.randint(0, 10**7 - 1):07d}"
        valid.append(e + nie.calc_check_digit(e))
    near += ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000",
             "DQ123456C", "BG123456A", "AB123456E", "QQ 12 34 56 C"]
    t = _idnr(rng)
    near.append(f"Steuer-ID {t[:-1]}{(int(t[-1]) + 1) % 10}")
    b = _bsn(rng)
    near.append(f"BSN {b[:-1]}{(int(b[-1]) + 1) % 10}")
    d = f"{rng.randint(10**7, 10**8 - 1)}"
    good = dni.calc_check_digit(d)
    near.append(d + ("A" if good != "A" else "B"))
    return valid, near


def _jwt(rng: random.Random) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    signature = "".join(rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(43))
    header, payload = part({"alg": "HS256", "typ": "JWT"}), part({"sub": rng.randint(1, 10**6)})
    return f"{header}.{payload}.{signature}"


def secrets(rng: random.Random) -> Values:
    """A credential of every format; near misses: too short, a public key, not a JWT."""
    def chars(pool: str, size: int) -> str:
        return "".join(rng.choice(pool) for _ in range(size))

    alnum = string.ascii_letters + string.digits
    key_lines = "\n".join(chars(alnum + "+/", 64) for _ in range(4))
    valid = [
        "sk-proj-" + chars(alnum + "_-", 48), "sk-" + chars(alnum, 48),
        "sk-ant-api03-" + chars(alnum + "_-", 93) + "AA",
        "AKIA" + chars(string.ascii_uppercase + string.digits, 16),
        "ghp_" + chars(alnum, 36), "github_pat_" + chars(alnum + "_", 82),
        f"xoxb-{rng.randint(10**11, 10**12)}-{rng.randint(10**11, 10**12)}-" + chars(alnum, 24),
        _jwt(rng), "aip_" + chars(alnum, 32), "AIza" + chars(alnum + "_-", 35),
        "sk_live_" + chars(alnum, 24),
        f"-----BEGIN RSA PRIVATE KEY-----\n{key_lines}\n-----END RSA PRIVATE KEY-----",
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{key_lines}\n-----END OPENSSH PRIVATE KEY-----",
    ]
    near = ["sk-short", "AKIA12345", "ghp_tooShort", "xoxb-1", "aip_short",
            "eyJhbGciOi", "eyJub3QganNvbg.eyJzdWIiOjF9.c2lnbmF0dXJlMTIz",
            f"-----BEGIN PUBLIC KEY-----\n{key_lines}\n-----END PUBLIC KEY-----"]
    return valid, near
