"""Build ``corpus.jsonl``, the labelled PII corpus, from the marked-up sentences below.

Run ``.venv/bin/python tests/data/pii/build_corpus.py`` after editing. Markup: ``[[TYPE|value]]``
marks an expected span (TYPE is a ``PIIType`` value); everything else is plain text. Lines in
``POSITIVES`` carry at least one span; lines in ``HARD_NEGATIVES`` carry none and hold strings that
look like PII but are not (order numbers, versions, ISBNs, hashes, UUIDs, Luhn-invalid card-like
numbers, 9-digit numbers that are not SSNs...). Labelling conventions: a labelled secret's span is
the value only (``password=[[SECRET|...]]``); a phone span starts at ``+`` or ``(`` when present
and includes an extension (``ext. 23``).

The builder checks every label independently of the detector under test (Luhn and mod-97 written
out again here, libphonenumber's ``is_valid_number``, ``ipaddress``), so a typo in a value fails the
build instead of silently turning into a "missed" finding.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import string
from pathlib import Path
from typing import Any

import phonenumbers

HERE = Path(__file__).resolve().parent
MARK_RE = re.compile(r"\[\[([A-Z_]+)\|(.*?)\]\]", re.S)
_rng = random.Random(20240615)
ALNUM = string.ascii_letters + string.digits


def tok(n: int, alphabet: str = ALNUM) -> str:
    """A deterministic random token (the corpus must not change between builds)."""
    return "".join(_rng.choice(alphabet) for _ in range(n))


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()][::-1]
    odd = sum(digits[0::2])
    even = sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return (odd + even) % 10 == 0


def iban_ok(value: str) -> bool:
    s = value.replace(" ", "")
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(tok(64, ALNUM + "+/") for _ in range(4))
    + "\n-----END RSA PRIVATE KEY-----"
)  # fmt: skip
PEM_EC = "-----BEGIN EC PRIVATE KEY-----\n" + tok(64, ALNUM + "+/") + "\n-----END EC PRIVATE KEY-----"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
    "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

POSITIVES: list[str] = [
    # --- emails
    "Contact [[EMAIL|john.doe@example.com]] for details.",
    "Send the invoice to [[EMAIL|Billing.Team@Acme-Corp.co.uk]] by Friday.",
    "cc: [[EMAIL|a.b+newsletter@mail.example.org]]",
    "Her address is <[[EMAIL|maria_garcia84@correo.es]]>.",
    "mailto:[[EMAIL|support@llmops.dev]]",
    "Reported by [[EMAIL|x@y.io]] yesterday",
    'From: "Li Wei" <[[EMAIL|li.wei@university.edu.cn]]>',
    "Users [[EMAIL|ops@example.com]], [[EMAIL|dev-team@sub.example.com]] and [[EMAIL|qa@example.net]]",
    "please reply to [[EMAIL|first.last@company.museum]]",
    "login: [[EMAIL|USER123@GMAIL.COM]]",
    "The form stored [[EMAIL|o'brien@example.ie]] incorrectly",
    "Email me at [[EMAIL|jane-doe@health.gov.au]].",
    "[[EMAIL|noreply@notifications.github.com]] sent 3 alerts",
    "Customer ([[EMAIL|k.nakamura@example.jp]]) asked for a refund",
    "ping [[EMAIL|root@mail-01.internal.example.com]] when done",
    "Bewerbung an [[EMAIL|personal@firma.de]] schicken",
    "email=[[EMAIL|test.user%tag@example.com]]",
    "Forwarded from [[EMAIL|sales@startup.ai]]; also [[EMAIL|ceo@startup.ai]]",
    "Écrivez à [[EMAIL|contact@exemple.fr]] s'il vous plaît",
    '{"user": "[[EMAIL|alice@example.com]]", "id": 42}',
    "The account [[EMAIL|bob.smith1990@yahoo.com]] was locked.",
    "Escalate to [[EMAIL|security-incidents@bank.example]].",
    "Visitor [[EMAIL|zz9@tiny.cc]] left a note",
    "Tel and mail: [[PHONE|+1 650-253-0000]], [[EMAIL|press@google.example.com]]",
    "Your receipt was sent to [[EMAIL|m.mueller@t-online.de]]",
    "Assigned to [[EMAIL|priya.k@infosys.example.in]] (on leave)",
    "Subscriber: [[EMAIL|news_reader_2@protonmail.ch]]",
    "Owner [[EMAIL|d.ivanova@yandex.ru]] approved the change",
    "Contact HR ([[EMAIL|hr@example.com]]) or IT ([[EMAIL|it-help@example.com]]).",
    "Send logs to [[EMAIL|logs+prod@observability.example.com]]",
    # --- phone numbers
    "Call me at [[PHONE|(212) 555-0199]] after 5pm.",
    "Office: [[PHONE|415.555.0132]]",
    "UK desk [[PHONE|+44 20 7946 0958]], ask for Tom.",
    "Berlin office [[PHONE|+49 30 901820]]",
    "Mobile [[PHONE|+49 151 23456789]] (WhatsApp)",
    "Paris: [[PHONE|+33 1 42 68 53 00]]",
    "Son portable: [[PHONE|+33 6 12 34 56 78]]",
    "Sydney support [[PHONE|+61 2 9374 4000]]",
    "Tokyo [[PHONE|+81 3-1234-5678]]",
    "Ring [[PHONE|+91 98765 43210]] for the Mumbai team",
    "Madrid [[PHONE|+34 612 34 56 78]]",
    "Rome switchboard [[PHONE|+39 06 6988 4857]]",
    "Amsterdam [[PHONE|+31 20 624 1111]]",
    "Stockholm [[PHONE|+46 8 123 456 78]]",
    "São Paulo celular [[PHONE|+55 11 91234-5678]]",
    "Singapore [[PHONE|+65 6123 4567]]",
    "Dublin [[PHONE|+353 1 234 5678]]",
    "Toronto [[PHONE|+1 (416) 555-0147]]",
    "He left a voicemail from [[PHONE|202-555-0173]].",
    "Toll free [[PHONE|+1-800-555-0199]]",
    "Boston line: [[PHONE|(617) 555 0123]]",
    "Cape Town [[PHONE|+27 21 123 4567]]",
    "CDMX [[PHONE|+52 55 1234 5678]]",
    "Beijing [[PHONE|+86 10 6552 9988]]",
    "Moscow [[PHONE|+7 495 123-45-67]]",
    "Zurich [[PHONE|+41 44 668 18 00]]",
    "Warsaw [[PHONE|+48 22 123 45 67]]",
    "Helsinki [[PHONE|+358 9 1234567]]",
    "Tel Aviv [[PHONE|+972 3-123-4567]]",
    "Seoul [[PHONE|+82 2-312-3456]]",
    "call me on [[PHONE|4155550132]] tomorrow",
    "phone: [[PHONE|6502530000]]",
    # --- payment cards
    "Card [[CREDIT_CARD|4111 1111 1111 1111]] exp 12/27",
    "Paid with [[CREDIT_CARD|4012888888881881]].",
    "old visa [[CREDIT_CARD|4222222222222]]",
    "Visa debit [[CREDIT_CARD|4000-0566-5566-5556]]",
    "test card [[CREDIT_CARD|4242 4242 4242 4242]] declined",
    "MC [[CREDIT_CARD|5555 5555 5555 4444]]",
    "Mastercard: [[CREDIT_CARD|5105-1051-0510-5100]]",
    "2-series [[CREDIT_CARD|2223 0031 2200 3222]]",
    "Card number [[CREDIT_CARD|5200828282828210]] on file",
    "Amex [[CREDIT_CARD|3782 822463 10005]]",
    "amex corp [[CREDIT_CARD|371449635398431]]",
    "Amex gold [[CREDIT_CARD|3787-344936-71000]]",
    "Discover [[CREDIT_CARD|6011 1111 1111 1117]]",
    "discover card [[CREDIT_CARD|6011000990139424]] was charged",
    "Diners [[CREDIT_CARD|3056 9309 0259 04]]",
    "Diners Club [[CREDIT_CARD|38520000023237]]",
    "JCB [[CREDIT_CARD|3530 1113 3330 0000]]",
    "jcb [[CREDIT_CARD|3566002020360505]]",
    "UnionPay [[CREDIT_CARD|6200 0000 0000 0005]]",
    "Maestro [[CREDIT_CARD|6759 6498 2643 8453]]",
    "Customer card: [[CREDIT_CARD|4917 4845 8989 7107]], CVV 123",
    "charge [[CREDIT_CARD|5425 2334 3010 9903]] for $49.99",
    '{"pan": "[[CREDIT_CARD|4263982640269299]]"}',
    "Refund to card ending in 1111 ([[CREDIT_CARD|4111-1111-1111-1111]])",
    "Two cards: [[CREDIT_CARD|4111111111111111]] and [[CREDIT_CARD|5555555555554444]]",
    # --- IBANs
    "IBAN [[IBAN|GB82 WEST 1234 5698 7654 32]]",
    "Transfer to [[IBAN|GB29NWBK60161331926819]].",
    "Konto: [[IBAN|DE89 3704 0044 0532 0130 00]]",
    "DE account [[IBAN|DE89370400440532013000]] (Commerzbank)",
    "RIB [[IBAN|FR14 2004 1010 0505 0001 3M02 606]]",
    "Cuenta [[IBAN|ES91 2100 0418 4502 0005 1332]]",
    "Conto [[IBAN|IT60 X054 2811 1010 0000 0123 456]]",
    "NL: [[IBAN|NL91ABNA0417164300]]",
    "Belgian account [[IBAN|BE68 5390 0754 7034]]",
    "Swiss [[IBAN|CH93 0076 2011 6238 5295 7]]",
    "Austria [[IBAN|AT61 1904 3002 3457 3201]]",
    "Polish IBAN: [[IBAN|PL61109010140000071219812874]]",
    "Swedish [[IBAN|SE45 5000 0000 0583 9825 7466]]",
    "Norway [[IBAN|NO9386011117947]]",
    "Denmark [[IBAN|DK50 0040 0440 1162 43]]",
    "Finland [[IBAN|FI21 1234 5600 0007 85]]",
    "Ireland [[IBAN|IE29 AIBK 9311 5212 3456 78]]",
    "Portugal [[IBAN|PT50 0002 0123 1234 5678 9015 4]]",
    "Luxembourg [[IBAN|LU28 0019 4006 4475 0000]]",
    "Saudi [[IBAN|SA03 8000 0000 6080 1016 7519]]",
    "Brazil [[IBAN|BR9700360305000010009795493P1]]",
    "Türkiye [[IBAN|TR33 0006 1005 1978 6457 8413 26]]",
    "Czech [[IBAN|CZ65 0800 0000 1920 0014 5399]]",
    "Hungary [[IBAN|HU42 1177 3016 1111 1018 0000 0000]]",
    "Greece [[IBAN|GR16 0110 1250 0000 0001 2300 695]]",
    "pay [[IBAN|GB82WEST12345698765432]] EUR 400",
    # --- IP addresses
    "Request from [[IP_ADDRESS|203.0.113.45]] was blocked",
    "ssh admin@[[IP_ADDRESS|192.168.1.10]]",
    "Server listening on [[IP_ADDRESS|10.0.0.12]]:8080",
    "client_ip=[[IP_ADDRESS|198.51.100.7]]",
    "Gateway [[IP_ADDRESS|172.16.254.1]], DNS [[IP_ADDRESS|8.8.8.8]].",
    "Blocked [[IP_ADDRESS|45.33.32.156]] after 10 failed logins",
    "X-Forwarded-For: [[IP_ADDRESS|81.2.69.160]], [[IP_ADDRESS|10.1.2.3]]",
    "subnet [[IP_ADDRESS|100.64.0.1]]/10 is carrier-grade NAT",
    "Connect to [[IP_ADDRESS|2001:db8::8a2e:370:7334]] over v6",
    "link local [[IP_ADDRESS|fe80::1ff:fe23:4567:890a]]",
    "Loopback [[IP_ADDRESS|::1]] responded",
    "Peer [[IP_ADDRESS|2606:4700:4700::1111]] is Cloudflare",
    "mapped [[IP_ADDRESS|::ffff:192.0.2.128]] seen in logs",
    "The attacker used [[IP_ADDRESS|185.220.101.4]] (Tor exit)",
    "user logged in from [[IP_ADDRESS|92.40.175.3]] at 09:14",
    "ip: [[IP_ADDRESS|2a00:1450:4009:80b::200e]]",
    "Allow [[IP_ADDRESS|127.0.0.1]] only.",
    # --- US social security numbers
    "SSN: [[US_SSN|536-22-1234]]",
    "Her social security number is [[US_SSN|219-09-9998]].",
    "ssn [[US_SSN|078-05-1121]] on the form",
    "Employee [[US_SSN|412-67-8901]] was onboarded",
    "SSN [[US_SSN|321 54 9876]] (spaces)",
    "social security no. [[US_SSN|523456789]]",
    "Applicant SSN: [[US_SSN|601-12-3456]]; DOB 1985-04-12",
    "ssn=[[US_SSN|234-56-7890]]",
    "W-2 for [[US_SSN|145-38-2290]]",
    "Taxpayer ID (SSN) [[US_SSN|772-41-0193]]",
    "SSN [[US_SSN|001-01-0001]] is the lowest valid one",
    "dependent's SSN: [[US_SSN|899-99-9999]]",
    # --- secrets
    "OPENAI_API_KEY=[[SECRET|sk-proj-" + tok(48, ALNUM + "_-") + "]]",
    "use key [[SECRET|sk-" + tok(48) + "]] for the batch job",
    "anthropic: [[SECRET|sk-ant-api03-" + tok(80, ALNUM + "_-") + "]]",
    "token [[SECRET|ghp_" + tok(36) + "]] leaked in CI logs",
    "GITHUB_TOKEN: [[SECRET|github_pat_11" + tok(20) + "_" + tok(59) + "]]",
    "AWS key id [[SECRET|AKIA" + tok(16, string.ascii_uppercase + string.digits) + "]]",
    "aws_access_key_id = [[SECRET|ASIA" + tok(16, string.ascii_uppercase + string.digits) + "]]",
    "slack bot [[SECRET|xoxb-" + tok(12, string.digits) + "-" + tok(13, string.digits) + "-" + tok(24) + "]]",
    "webhook token [[SECRET|xoxp-" + tok(11, string.digits) + "-" + tok(24) + "]]",
    "maps key [[SECRET|AIza" + tok(35, ALNUM + "_-") + "]]",
    "stripe [[SECRET|sk_live_" + tok(24) + "]]",
    "hf token [[SECRET|hf_" + tok(34) + "]]",
    "Authorization: Bearer [[SECRET|" + JWT + "]]",
    "session=[[SECRET|" + JWT + "]]",
    "key file:\n[[SECRET|" + PEM + "]]\nend",
    "[[SECRET|" + PEM_EC + "]]",
    "password=[[SECRET|Tr0ub4dor&3x]]",
    "db password: [[SECRET|s3cr3t-P@ss-2024]]",
    "api_key: [[SECRET|9f8e7d6c5b4a39281706f5e4d3c2b1a0]]",
    'client_secret="[[SECRET|' + tok(40) + ']]"',
    "export AWS_SECRET_ACCESS_KEY=[[SECRET|" + tok(40, ALNUM + "+/") + "]]",
    "the signing secret is [[SECRET|" + tok(32) + "]] do not share",
    "X-Api-Token [[SECRET|" + tok(40) + "]]",
    "token=[[SECRET|" + tok(24) + "]]",
    # --- mixed lines
    "Name: J. Doe, email [[EMAIL|jdoe@example.com]], phone [[PHONE|(415) 555-0175]], "
    "SSN [[US_SSN|509-23-4781]]",
    "Wire from [[IBAN|DE44 5001 0517 5407 3249 31]] with card [[CREDIT_CARD|4111 1111 1111 1111]] as backup",
    "Login from [[IP_ADDRESS|203.0.113.9]] by [[EMAIL|eve@example.org]] using [[SECRET|ghp_" + tok(36) + "]]",
]

HARD_NEGATIVES: list[str] = [
    "Order #4000123412341234 shipped on 2024-03-02.",
    "Order number 1234567890123456 is delayed",
    "Invoice INV-2024-000123 is overdue",
    "Invoice 2024-0001-7788 paid",
    "Upgrade to version 1.2.3.4-beta before Monday",
    "Released v2.10.3 and 1.2.3 today",
    "build 10.0.19041.1 is the current Windows build",
    "firmware 3.14.15.92 fixes the bug",
    "pip install torch==2.3.1 transformers==4.41.2",
    "ISBN 978-0-306-40615-7",
    "ISBN-13: 9780306406157, ISBN-10: 0-306-40615-2",
    "EAN 4006381333931 on the box",
    "Timestamp 2024-01-15 12:30:45 UTC",
    "2024-01-15T12:30:45.123456Z request finished",
    "epoch 1705321845123 ms",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "request id 550e8400-e29b-41d4-a716-446655440000",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
    "Card-like 4111 1111 1111 1112 fails Luhn",
    "Number 5555 5555 5555 4445 is invalid",
    "ref 1234-5678-9012-3456",
    "Tracking number 482913576 for your parcel",
    "Employee number 123456789",
    "Area code 000-12-3456 is never issued",
    "Fake 666-45-6789 and 912-34-5678",
    "Invalid group 123-00-4567 and serial 123-45-0000",
    "IBAN-like GB00 WEST 1234 5698 7654 32 has bad check digits",
    "DE00370400440532013000 fails mod 97",
    "XX82WEST12345698765432 is not a country",
    "Order 2025550143 confirmed",
    "ZIP 94105-1234",
    "Due 12/31/2024, total $1,234,567.89",
    "OID 1.3.6.1.4.1.311.21.7",
    "MAC 00:1A:2B:3C:4D:5E on eth0",
    "Meeting at 12:30:45 sharp",
    "Section 4.2.1.3 of the spec",
    "Chart logo@2x.png and icon@3x.jpg",
    "npm i lodash@4.17.21 react@18.2.0",
    "Follow @llmops_dev on social media",
    "sk-learn-compatible-estimator-interface is a phrase",
    "class PolicyNameV2WithSuffix extends Base",
    "call getUserById2024Version() next",
    "model TinyLlama-1.1B-Chat-v1.0 and Llama-3-8B-Instruct-GPTQ-4bit",
    "path /usr/local/lib/python3.11/site-packages/torch/nn/Module.py",
    "distilbert-base-uncased-finetuned-sst-2-english scored 0.91",
    "std::vector<int> and foo::bar::baz in C++",
    "Temperature 36.6, pressure 120/80, pulse 72",
    "Coordinates 48.8584, 2.2945",
    "The password is stored hashed (never plain)",
    "token: <your-token-here>",
    "api_key=${OPENAI_API_KEY}",
    "secret: Confidential",
    "Phone extension 4412, room 301",
    "Part number 9780-1234-5678-9012",
    "Serial SN-7734-2231-9981",
    "Account 00012345 at branch 0042",
    "RUN_ID_20240115_ABCdef finished in 35s",
    "Bytes 0x7fffffff and 0xDEADBEEF",
    "Matrix 1024x768 at 60Hz, 1920x1080",
    "Answer 42 out of 100, error 1e-6",
    "ip address 999.1.1.1 is not valid",
    "999.999.999.999 placeholder",
    "Version string 4.4.4.4-rc1",
    "see RFC 7231 section 6.5.1",
    "Copyright 2010-2024 ACME Inc.",
    "Lottery numbers 04 15 23 42 08 16",
    "Call 911 in an emergency",
    "Patch 8.2.1 notes: fixed 1234 bugs",
    "Base image sha256:9c8ea4a3f4e2b6d5c1a7b0e3f2d4c6b8a1e3f5d7c9b2a4e6f8d0c2b4a6e8f0d2",
]

# Written after the detector was tuned on the lists above, and not used to tune it: the scores on
# this split are the honest estimate (see docs/security.md).
HOLDOUT_POSITIVES: list[str] = [
    "Reach out: [[EMAIL|sarah.o.connor@skynet-labs.com]]",
    "EMAIL: [[EMAIL|JOHN.SMITH@EXAMPLE.ORG]]",
    "[[EMAIL|bounce-12345-abc@mailer.example.com]] rejected the message",
    "Reply-To: <[[EMAIL|info@café-example.com]]>",
    "(contact: [[EMAIL|t.nguyen@vinuni.edu.vn]])",
    "emails: [[EMAIL|a.lee@b-corp.co]];[[EMAIL|c.kim@d-corp.co]]",
    "Signed up as [[EMAIL|rocket_man_99@hotmail.co.uk]].",
    "git log --author=[[EMAIL|dev@company.example.com]]",
    "Hotline: [[PHONE|+44 (0)20 7946 0958]]",
    "cell: [[PHONE|415 555 0182]]",
    "Text me at [[PHONE|415-555-0139]]!",
    "[[PHONE|+1.650.253.0000]] is the main line",
    "call [[PHONE|(800) 555-0100 ext. 23]]",  # label fixed: a phone span includes its extension
    "Phone number: [[PHONE|+61 412 345 678]]",
    "WhatsApp [[PHONE|+34 622 123 456]]",
    "Please phone [[PHONE|+1 202 555 0147]] before noon",
    "Visa [[CREDIT_CARD|4111-1111-1111-1111]] exp 09/26 cvc 737",
    "cc#: [[CREDIT_CARD|5500 0000 0000 0004]]",
    "card=[[CREDIT_CARD|378282246310005]]&exp=1226",
    "PAN [[CREDIT_CARD|6011 0009 9013 9424]] charged twice",
    "[[CREDIT_CARD|4000 0027 6000 3184]] (3DS test card)",
    "Card: [[CREDIT_CARD|3714 496353 98431]]",
    "the number was [[CREDIT_CARD|4111111111111111]].",
    "IBAN: [[IBAN|GB33BUKB20201555555555]]",
    "iban [[IBAN|de89 3704 0044 0532 0130 00]]",
    "Pay to [[IBAN|FR76 3000 6000 0112 3456 7890 189]].",
    "Dutch account [[IBAN|NL02ABNA0123456789]]",
    "[[IBAN|ES7921000813610123456789]] (Caixa)",
    "Account (IBAN) [[IBAN|CH56 0483 5012 3456 7800 9]]",
    "Bank: AIB, IBAN [[IBAN|IE64 IRCE 9205 0112 3456 78]], BIC IRCEIE2D",
    "GET /health from [[IP_ADDRESS|10.20.30.40]] 200 OK",
    "upstream [[[IP_ADDRESS|2001:db8:85a3::8a2e:370:7334]]]:443 timed out",
    "IP=[[IP_ADDRESS|172.31.255.255]];",
    '[[IP_ADDRESS|66.249.66.1]] - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1"',
    "allowlist [[IP_ADDRESS|52.94.236.248]]/32",
    "ping [[IP_ADDRESS|1.1.1.1]] works",
    "addr [[IP_ADDRESS|fd12:3456:789a:1::1]] assigned",
    "SSN# [[US_SSN|457-55-5462]]",
    "SS No. [[US_SSN|123-45-6780]]",
    "ssn: [[US_SSN|457 55 5462]]",
    "His SSN is [[US_SSN|457555462]].",
    'OPENAI_API_KEY="[[SECRET|sk-proj-' + tok(40, ALNUM + "_-") + ']]"',
    "Authorization: token [[SECRET|ghp_" + tok(36) + "]]",
    "heroku_api_key=[[SECRET|01234567-89ab-cdef-0123-456789abcdef]]",
    "mongodb+srv://admin:[[SECRET|Pa55w0rd!]]@cluster0.mongodb.net/db",
    "AWS_SECRET_ACCESS_KEY: [[SECRET|wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY]]",
    "sendgrid [[SECRET|SG." + tok(22, ALNUM + "_-") + "." + tok(43, ALNUM + "_-") + "]]",
    "npm token [[SECRET|npm_" + tok(36) + "]]",
    "https://app.example.com/cb?access_token=[[SECRET|" + JWT + "]]&state=xyz",
    "[[SECRET|-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + tok(70, ALNUM + "+/")
    + "\n-----END OPENSSH PRIVATE KEY-----]]",
    "gitlab [[SECRET|glpat-" + tok(20, ALNUM + "_-") + "]]",
]

HOLDOUT_NEGATIVES: list[str] = [
    "Build #20240115.3 succeeded",
    "Docker image python:3.11.7-slim-bookworm",
    "chromedriver 120.0.6099.109 installed",
    "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36",
    "Kernel 5.15.0.91 generic",
    "Transaction ID 8423901756423187",
    "Tracking 1Z999AA10123456784",
    "iPhone 15 Pro, IMEI 356938035643809",
    "Gift card code 6035 1234 5678 9012",
    "SWIFT/BIC DEUTDEFF500",
    "Postcode SW1A 1AA",
    "Git tag release-2024.01.15",
    "Pi is 3.14159265358979",
    "CUDA 12.1.105 driver 535.104.05",
    "Patient MRN 004857392",
    "Flight BA0117 seat 32A",
    "Phone: N/A",
    "curl -H 'Authorization: Bearer $TOKEN'",
    "password: ********",
    "Bitcoin address 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
    "thumbnail iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
    "rkJggg==",
    "S3 key uploads/2024/01/15/a8f5f167f44f4964e6c998dee827110c.jpg",
    "Session cookie name JSESSIONID",
    "Coupon SAVE20NOW at checkout",
    "Model ID meta-llama/Meta-Llama-3-8B-Instruct",
    "Random seed 1234567891",
    "ULID 01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "Date 15.01.2024",
    "Price €1.234,56",
    "Version: 10.0.0.1",
    "social: 078-05-1120 (the Woolworth wallet card, voided)",
]


def parse(marked: str) -> dict[str, Any]:
    text_parts: list[str] = []
    spans: list[dict[str, Any]] = []
    cursor = position = 0
    for match in MARK_RE.finditer(marked):
        plain = marked[cursor : match.start()]
        text_parts.append(plain)
        position += len(plain)
        kind, value = match.group(1), match.group(2)
        spans.append({"type": kind, "start": position, "end": position + len(value), "value": value})
        text_parts.append(value)
        position += len(value)
        cursor = match.end()
    text_parts.append(marked[cursor:])
    return {"text": "".join(text_parts), "spans": spans}


def check(span: dict[str, Any]) -> None:
    """Independent validity checks so the labels are right (not merely what the detector says)."""
    kind, value = span["type"], str(span["value"])
    ok = True
    if kind == "CREDIT_CARD":
        ok = luhn_ok(value) and 13 <= sum(c.isdigit() for c in value) <= 19
    elif kind == "IBAN":
        ok = iban_ok(value)
    elif kind == "PHONE":
        ok = phonenumbers.is_valid_number(phonenumbers.parse(value, "US"))
    elif kind == "IP_ADDRESS":
        ok = bool(ipaddress.ip_address(value))
    assert ok, f"invalid {kind} label: {value!r}"


def build_rows(positives: list[str], negatives: list[str], split: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for index, marked in enumerate(positives):
        row: dict[str, Any] = {"id": f"{split}-pos-{index:03d}", "split": split, "kind": "positive"}
        row.update(parse(marked))
        for span in row["spans"]:
            check(span)
        rows.append(row)
    for index, marked in enumerate(negatives):
        assert "[[" not in marked
        rows.append(
            {
                "id": f"{split}-neg-{index:03d}",
                "split": split,
                "kind": "hard_negative",
                "text": marked,
                "spans": [],
            }
        )
    return rows


def main() -> None:
    rows = build_rows(POSITIVES, HARD_NEGATIVES, "tuning") + build_rows(
        HOLDOUT_POSITIVES, HOLDOUT_NEGATIVES, "holdout"
    )
    with (HERE / "corpus.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    spans = sum(len(r["spans"]) for r in rows)
    negatives = sum(r["kind"] == "hard_negative" for r in rows)
    print(f"wrote {len(rows)} rows, {spans} labelled spans, {negatives} hard negatives")


if __name__ == "__main__":
    main()
