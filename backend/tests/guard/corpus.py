"""The labelled corpus: generated values inside realistic text, hand-written finance texts
with no personal data at all, and near misses that must pass untouched.

Used by the guard's tests (every valid value found, nothing else) and by
`bench/bench_guard.py` (precision and recall per kind).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from backend.guard.kinds import PiiType
from backend.tests.guard import values

# Keywords the weak national ids need; they are context, not part of the value.
_KEYWORDS = ("SSN ", "Steuer-ID ", "BSN ")

TEMPLATES: dict[PiiType, tuple[str, ...]] = {
    "card": (
        "Please refund the duplicate charge of EUR 249.90 on card {v}, booked 2024-03-14.",
        "Customer says card {v} was declined at checkout (order #A-55821, 3 items).",
        "Chargeback CB-2024-118: card number {v}, amount USD 1,180.00, reason code 4837.",
        # A number a space away joins the card's digits into one longer run (expiry, CVV).
        "Card details as read out on the call: {v} 12/27 123, name on card as on file.",
        "Two charges of EUR 59.00 on {v} 14 days apart; please check the second.",
    ),
    "iban": (
        "Kindly transfer EUR 12,480.00 to {v} (BIC DEUTDEFFXXX) by 31.05.2024, ref INV-88213.",
        "Supplier bank details changed: new IBAN {v}, effective from 1 July 2024.",
        "SEPA mandate MNDT-2024-0042 debits {v} monthly, first collection 2024-06-03.",
    ),
    "email": (
        "Forwarded from {v}: the Q2 statement shows a balance of GBP 3,204.17.",
        "Can you draft a reply to {v} about invoice 2024-0815 (net 30 days)?",
        "Escalate ticket FIN-3321 to {v} before the 15:00 cut-off.",
    ),
    "phone": (
        "The client asked to be called back on {v} about the overdue amount of EUR 880.00.",
        "Treasury desk: {v} (Mon-Fri, 08:00-17:00 CET), cut-off for same-day payments 14:30.",
        "Left a voicemail on {v} regarding the 2023 audit adjustments.",
    ),
    "national_id": (
        "Onboarding form for the new contractor, {v}, start date 2024-09-01, rate EUR 95/h.",
        "The payroll correction concerns the employee with {v}; net difference EUR 212.40.",
        "KYC file 2024/117 lists {v} as the beneficial owner's identifier.",
        "Leave balance for {v} 12 days, carried over into 2025.",
    ),
    "secret": (
        "The integration fails with 401; config has api_key = {v} and timeout 30.",
        "Here is the token I used for the export job: {v} - is it still valid?",
        "Rotated credentials for the reporting service:\n{v}\nplease update the vault.",
    ),
}

CLEAN_TEXTS: tuple[str, ...] = (
    "Invoice INV-2024-00123 dated 15.03.2024: 3 x consulting at EUR 1,250.00 = EUR 3,750.00, "
    "VAT 19% EUR 712.50, total EUR 4,462.50. Payment due 2024-04-15, order PO 4500012345.",
    "Q3 2024 results: revenue USD 48.2m (+7.4% YoY), EBITDA margin 21.3%, net debt/EBITDA "
    "1.8x. Guidance for FY2024 unchanged at USD 190-200m.",
    "Portfolio update: bought 1,200 AAPL (ISIN US0378331005) at 189.84 and sold 500 SAP "
    "(ISIN DE0007164600) at 176.30; settlement T+2, trade ids 20240611-000187 and "
    "20240611-000188.",
    "Statement 2024/05 for account ref ACC-0012345678: opening balance 10,482.55, 14 debits "
    "totalling 7,921.10, 3 credits totalling 12,000.00, closing balance 14,561.45.",
    "Purchase order 4500098765 (cost centre 4711, GL account 620100): 40 licences at "
    "EUR 32.50, delivery week 27, Incoterms DAP Frankfurt.",
    "The loan of EUR 2,500,000 runs from 01/07/2024 to 30/06/2029 at 3M EURIBOR + 185 bp, "
    "amortising 10% per year; facility id FAC-2024-0091.",
    "Reconcile batch 2024061100045: 1,024 transactions, 1,019 matched, 5 open (total "
    "EUR 3,412.08). Oldest open item from 2024-05-28.",
    "FX hedge: sell EUR 5,000,000 buy USD at 1.0842, value date 2024-09-16, deal number "
    "FX-884213, counterparty limit 25,000,000.",
    "Expense report ER-33910: hotel 3 nights EUR 447.00, train EUR 128.40, meals EUR 96.15; "
    "approved by cost centre 4100 on 12.06.2024 at 09:42.",
    "Dividend of USD 0.24 per share, record date 2024-08-12, payable 2024-08-26; CUSIP "
    "037833100, 15,000,000 shares outstanding.",
    "Budget 2025: personnel 12,400,000; IT 3,150,000; travel 420,000; contingency 2.5% of "
    "total; headcount 148 FTE (from 141).",
    "Journal entry JE-2024-06-0042: debit 400000 (1,200.00), credit 160000 (1,200.00), "
    "posting period 06/2024, document date 2024-06-30.",
    "Credit note CN-2024-551 cancels invoice 2024-0815 for EUR 980.00 plus VAT of 186.20; "
    "customer number 100234, contract 2023-11-0007.",
    "Wire cut-offs: EUR 16:00, USD 15:30, GBP 14:00 (times CET). SWIFT MT103 reference "
    "MT103-20240611-77812, UETR pending.",
    "Our 2024 bond (ISIN XS2719090765) pays 4.125% annually; nominal EUR 500,000,000, "
    "maturity 2031-01-15, rating A-/A3.",
    "Depreciation schedule: asset 1000452, cost 84,000.00, useful life 7 years, monthly "
    "charge 1,000.00 from 2024-01 to 2030-12.",
    "Sales by region in kEUR: DACH 12,480; Benelux 4,315; France 6,902; UK 5,118; total "
    "28,815 (plan 27,500).",
    "Tax calendar: VAT return 10.07.2024, payroll tax 10.07.2024, corporate tax prepayment "
    "10.09.2024 of EUR 184,500.",
    "Payment run 2024-06-14: 312 payments, EUR 4,812,330.19, file PAY20240614_01.xml, "
    "approval 2 of 2 at 11:05.",
    "Shipment 0080012345 left the warehouse on 2024-06-10; 24 pallets, 11,520 kg, "
    "invoice to follow with order 4500012399.",
)


@dataclass(frozen=True, slots=True)
class Sample:
    """A text and the values in it the guard must find (kind, exact text)."""

    text: str
    expected: tuple[tuple[PiiType, str], ...]
    label: str  # "valid", "near miss" or "clean"


def _value_text(value: str) -> str:
    for keyword in _KEYWORDS:
        if value.startswith(keyword):
            return value[len(keyword) :]
    return value


def corpus(seed: int = 14) -> list[Sample]:
    """Every sample: generated valid values and near misses of each kind, then clean texts."""
    rng = random.Random(seed)
    generated = {
        "card": values.cards(rng), "iban": values.ibans(rng), "email": values.emails(rng),
        "phone": values.phones(rng), "national_id": values.national(rng),
        "secret": values.secrets(rng),
    }
    samples: list[Sample] = []
    for kind, (valid, near) in generated.items():
        templates = TEMPLATES[kind]  # type: ignore[index]
        for index, value in enumerate(valid):
            text = templates[index % len(templates)].format(v=value)
            samples.append(Sample(text, ((kind, _value_text(value)),), "valid"))  # type: ignore[arg-type]
        for index, value in enumerate(near):
            text = templates[index % len(templates)].format(v=value)
            samples.append(Sample(text, (), "near miss"))
    # Several kinds in one message, as a pasted e-mail would have them.
    v = {kind: pair[0] for kind, pair in generated.items()}
    mixed = (
        f"From: {v['email'][0]}\nPlease pay EUR 1,200.00 to {v['iban'][1]} today; if that fails "
        f"charge {v['card'][1]}. Call me on {v['phone'][0]}. My SSN is {v['national_id'][0]}."
    )
    samples.append(Sample(mixed, (
        ("email", v["email"][0]), ("iban", v["iban"][1]), ("card", v["card"][1]),
        ("phone", v["phone"][0]), ("national_id", v["national_id"][0]),
    ), "valid"))
    samples += [Sample(text, (), "clean") for text in CLEAN_TEXTS]
    return samples
