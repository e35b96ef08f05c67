"""Answer extraction on realistic model outputs: numbers in many scripts and formats, tricky negatives,
multiple-choice labels (X-CSQA) and NLI labels (XNLI, English and prompt-language words)."""

from __future__ import annotations

import pytest

from lingualift.eval.extraction import (
    extract_choice_label,
    extract_nli_label,
    extract_number,
    normalize_digits,
    numbers_match,
    parse_gold_number,
)

# (model output, expected number). Grouped by what they exercise.
NUMERIC_CASES = [
    # plain last number / chain of thought
    ("Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.", 18),
    ("It takes 2/2=1 bolt of white fiber.\nSo the total is 2+1=3 bolts.", 3),
    ("The cost of the house and repairs came out to 80,000+50,000=$130,000.\nHe made a profit of $70,000", 70000),
    ("She has 5 apples.", 5),
    ("Step 1: 12 * 4 = 48\nStep 2: 48 + 2 = 50", 50),
    # thousands separators and decimals
    ("The total is 1,234,567 people.", 1234567),
    ("He paid $1,234.50 for the car.", 1234.5),
    ("Der Preis beträgt 1.234,50 Euro.", 1234.5),
    ("Il y a 1.234.567 habitants.", 1234567),
    ("Каждый получит 3,5 яблока.", 3.5),
    ("La respuesta es 0,75", 0.75),
    ("Each piece is 2.25 meters long.", 2.25),
    ("It costs .5 dollars per egg.", 0.5),
    ("Population: 12\u00a0345 people", 12345),
    ("Le total est de 1\u202f000 euros.", 1000),
    ("The answer is 1,000.", 1000),
    # negatives
    ("The temperature dropped to -5 degrees.", -5),
    ("x = -12", -12),
    ("The balance is −40 dollars.", -40),
    ("The answer is -3.5", -3.5),
    # fractions
    ("Each friend gets 3/4 of a pizza.", 0.75),
    ("So the probability is \\frac{1}{4}.", 0.25),
    ("\\boxed{\\dfrac{3}{8}}", 0.375),
    ("He ate 1 / 2 of the cake.", 0.5),
    # answer cues
    ("The answer is 18.\n\nLet me double-check: 16 - 3 - 4 = 9 eggs.", 18),
    ("The answer is: 42", 42),
    ("16 - 3 - 4 = 9\n9 * 2 = 18\n#### 18", 18),
    ("The answer is 16 - 3 - 4 = 9.", 9),
    ("Final answer: 27 marbles, since 30 - 3 = 27.", 27),
    ("The answer is:\n64", 64),
    ("So she has \\boxed{15} apples left, not 20.", 15),
    ("Therefore $\\boxed{1,250}$ and 3 more are discussed later.", 1250),
    ("La respuesta es 12 manzanas. Luego compró 3 más.", 12),
    ("Die Antwort lautet 7. Insgesamt 9 Kinder.", 7),
    ("La réponse est 45 euros.", 45),
    ("Ответ: 8 конфет. Всего было 10.", 8),
    ("所以她每天赚18美元。答案是18。", 18),
    ("答えは 25 です。", 25),
    ("Jibu ni 60.", 60),
    # units after numbers and currency before
    ("The car weighs 1500kg.", 1500),
    ("The distance is 12 km.", 12),
    ("She earns $45 per hour.", 45),
    ("That is 35% of the class.", 35),
    ("It takes 90 minutes.", 90),
    ("合計は１２０円です。", 120),
    # native digits
    ("উত্তর হল ১৮।", 18),  # Bengali
    ("তিনি প্রতিদিন ১,২৫০ টাকা উপার্জন করেন।", 1250),  # Bengali with separator
    ("उत्तर ४५ है।", 45),  # Devanagari
    ("คำตอบคือ ๑๒", 12),  # Thai
    ("الجواب هو ٢٤", 24),  # Arabic-Indic
    ("٣٫٥ كيلوغرام", 3.5),  # Arabic decimal separator
    ("جواب ۱۵ است", 15),  # Extended Arabic-Indic (Persian/Urdu)
    ("答案是１８。", 18),  # full-width
    ("సమాధానం ౩౬", 36),  # Telugu
    ("ಉತ್ತರ ೭", 7),  # Kannada
    ("જવાબ ૯૦ છે", 90),  # Gujarati
    ("ഉത്തരം ൫൦", 50),  # Malayalam
    ("பதில் ௨௦", 20),  # Tamil
    # tricky negatives: things that must not be read as the answer / as negative numbers
    ("She worked between 10-15 hours and earned 300 dollars.", 300),
    ("On 2023-05-12 she bought 7 apples.", 7),
    ("On 12/05/2023 she bought 7 apples.", 7),
    ("The shop opens at 9:30 am and she bought 4 loaves.", 4),
    ("She sold 12 cakes by 10:45.", 12),
    ("1. Janet has 16 eggs.\n2. She eats 3 and bakes with 4.\n3. She sells 9 eggs for $18.", 18),
    ("16-3-4=9 so she sells 9 eggs", 9),
    ("The answer is 5.\n\n### Instruction:\nTom has 12 apples and eats 3.", 5),
    ("He has 7 marbles.\nQuestion: Tom has 12 marbles", 7),
    ("Numbers 4, 5, 6 give 15 in total", 15),
    ("- 5 apples from Tom\n- 3 apples from Ann\nTotal: 8", 8),
]


@pytest.mark.parametrize("output, expected", NUMERIC_CASES)
def test_extract_number(output, expected):
    assert extract_number(output) == pytest.approx(expected)


def test_case_inventory_is_large_and_multiscript():
    assert len(NUMERIC_CASES) >= 60
    scripts = set()
    for output, _ in NUMERIC_CASES:
        for char in output:
            if char.isdigit() and not char.isascii():
                scripts.add(char.encode("unicode_escape")[:5])
    assert len(scripts) >= 8


@pytest.mark.parametrize("output", ["", "No numbers here.", "I don't know.", "### Instruction: 5 apples"])
def test_no_number(output):
    assert extract_number(output) is None


def test_normalize_digits():
    assert normalize_digits("১২৩ ๔๕ ٦٧ ８９ ०") == "123 45 67 89 0"
    assert normalize_digits("cm² ①") == "cm² ①"  # exponents and list marks are not digits of a number


def test_a_unit_exponent_is_not_the_answer():
    assert extract_number("The area is 25 cm².") == 25.0
    assert extract_number("Each side is 5 cm, so the area is 5 * 5 = 25 cm²") == 25.0


@pytest.mark.parametrize("gold, value", [("5 ", 5), ("45.0", 45), ("0.9", 0.9), ("1,000", 1000), (18, 18), ("42.33", 42.33)])
def test_parse_gold(gold, value):
    assert parse_gold_number(gold) == pytest.approx(value)


def test_parse_gold_rejects_text():
    with pytest.raises(ValueError):
        parse_gold_number("five")


def test_numeric_tolerance():
    assert numbers_match(45.0004, 45.0)
    assert not numbers_match(45.01, 45.0)
    assert not numbers_match(None, 1.0)
    assert numbers_match(0.3333, 1 / 3)


@pytest.mark.parametrize(
    "output, expected",
    [
        ("The answer is (B).", "B"),
        ("B", "B"),
        ("A", "A"),
        ("Answer: C", "C"),
        ("answer is d", "D"),
        ("(E) river", "E"),
        ("A person would go to the bank, so the answer is C.", "C"),
        ("I think it is B. Because a fox lives in the forest.", "B"),
        ("A fox lives in the forest.", "B"),  # no label: matched by choice text
        ("Nothing fits.", None),
    ],
)
def test_extract_choice(output, expected):
    choices = ["bank", "forest", "library", "kitchen", "river"]
    assert extract_choice_label(output, ("A", "B", "C", "D", "E"), choices) == expected


@pytest.mark.parametrize(
    "output, lang, expected",
    [
        ("entailment", "en", "entailment"),
        ("The answer is contradiction.", "en", "contradiction"),
        ("Neutral. The premise says nothing about it.", "en", "neutral"),
        ("Yes, the premise entails it.", "en", "entailment"),
        ("No.", "en", "contradiction"),
        ("Nein", "de", "contradiction"),
        ("Auch", "de", "neutral"),
        ("不是的", "zh", "contradiction"),
        ("是的", "zh", "entailment"),
        ("Ndiyo", "sw", "entailment"),
        ("Нет", "ru", "contradiction"),
        ("hmm", "en", None),
    ],
)
def test_extract_nli(output, lang, expected):
    assert extract_nli_label(output, lang) == expected
