#!/usr/bin/env python3
"""llama.cpp as the tokenizer oracle: generate test strings, tokenize them with llama.cpp.

    tokenizer-oracle.py --vocab VOCAB.gguf --out CASES.json --seed 1234 --count 2500
    tokenizer-oracle.py ... --seed random        # fresh seed, printed

For each generated input (bytes; most valid UTF-8, some deliberately invalid) and a
parse_special flag, records llama.cpp's token ids (add_special=false) and its detokenization
with and without special rendering. Inputs that llama.cpp cannot process (UTF-8 that decodes
beyond U+10FFFF: llama.cpp aborts) are never generated. Output JSON:

    {"vocab": NAME, "seed": S, "cases": [{"input": base64, "parse_special": bool, "ids": [...],
      "detok": base64, "detok_special": base64}, ...]}
"""
import argparse
import base64
import ctypes
import json
import os
import random
import sys
import unicodedata

import llama_cpp

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
            "</tool_call>", "<|fim_prefix|>", "<|vision_start|>", "<|image_pad|>", "<tts_pad>",
            "<|im_", "im_end|>", "<think", "[PAD248100]", "<|audio_pad|>", "<tool_response>"]

SCRIPTS = {
    "latin": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "latin_ext": "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿčďěňřšťůžąęłńśźżőűğışțăđơưẠạẶặẾếỆệ",
    "cyrillic": "абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯёЁїієґ",
    "greek": "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩάέήίόύώϊϋΐΰ",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهويءآأؤإئةىًٌٍَُِّْ٠١٢٣٤٥٦٧٨٩",
    "hebrew": "אבגדהוזחטיכלמנסעפצקרשתךםןףץ\u05b0\u05b4\u05b7\u05bc",
    "devanagari": "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह\u093e\u093f\u0940\u0941\u0942\u0947\u0948\u094b\u094c\u094d\u0902\u0903०१२३",
    "thai": "กขฃคฅฆงจฉชซฌญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮ\u0e31\u0e34\u0e35\u0e36\u0e37\u0e38\u0e39\u0e47\u0e48\u0e49\u0e4a\u0e4b\u0e4c๐๑๒",
    "khmer": "កខគឃងចឆជឈញដឋឌឍណតថទធនបផពភមយរលវសហឡអ\u17b6\u17b7\u17b8\u17b9\u17ba\u17bb\u17bc\u17c1\u17c6\u17c7\u17d2",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴",
    "hangul": "가나다라마바사아자차카타파하각간갇갈감갑것겠게고과관광교구국군권귀그근글금기길김까깨꼬꾸끄끼",
    "jamo": "\u1100\u1161\u11a8\u1102\u1165\u11ab\u1103\u1169\u11af",
    "kana": "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモャュョッー",
    "georgian": "აბგდევზთიკლმნოპჟრსტუფქღყშჩცძწჭხჯჰ",
    "armenian": "աբգդեզէըթժիլխծկհձղճմյնշոչպջռսվտրցւփքօֆ",
    "ethiopic": "ሀሁሂሃሄህሆለሉሊላሌልሎሐሑሒሓሔሕሖመሙሚማሜምሞ",
    "math": "∀∂∃∅∇∈∉∋∏∑−∓∗√∝∞∠∧∨∩∪∫≈≠≡≤≥⊂⊃⊆⊇⊕⊗⊥⋅⌈⌉⌊⌋〈〉𝔸𝔹ℂ𝕏𝐀𝐁𝑎𝑏",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»‹›—–―‘’‚“”„†‡•…‰′″‴※‼⁇⁈⁉、。「」『』【】〔〕！？，．：；（）",
    "digits": "0123456789０１２３４５６７８９٠١٢٣٤٥٦٧٨٩۰۱۲۳०१२३४५६७८९½¼¾²³¹⅓⅔ⅠⅡⅢⅣ①②③",
    "marks": "\u0300\u0301\u0302\u0303\u0308\u030a\u0327\u0328\u0331\u0345\u20dd\u20e3\u0483\u0488\u1ab0\u1dc0\ufe20",
    "space": " \t\n\r\u000b\u000c\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\u180e\ufeff",
}
EMOJI = ["🦙", "😀", "😁", "🚀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇺🇸", "🇯🇵", "❤️", "☃", "⭐",
         "😶\u200d🌫️", "🧑🏿\u200d💻", "1️⃣", "#️⃣", "🫠", "🪿", "\U0001F9D1\u200d\U0001F91D\u200d\U0001F9D1"]
WORDS = ["the", "The", "THE", "don't", "I'm", "you'RE", "we'Ve", "they'LL", "it's", "He'd", "o'clock",
         "hello", "world", "tokenizer", "llama.cpp", "Qwen3.5", "naïve", "café", "Ångström", "résumé",
         "straße", "İstanbul", "ǅemal", "K\u212a", "ﬁnance", "Ⅻ", "x²", "e\u0301", "n\u0303o"]
CODE = [
    "def f(x):\n    return x ** 2  # square\n",
    "fn main() {\n\tlet v: Vec<u32> = (0..10).collect();\n\tprintln!(\"{:?}\", v);\n}\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }\r\n",
    "{\"key\": [1, 2.5e-3, null, true], \"nested\": {\"a\": \"b\"}}",
    "<div class=\"x\">&nbsp;&lt;tag&gt;</div>\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "    if (a && b || !c) { x += 1; } else { x -= 1; }\n\n\n",
    "$ ls -la | grep '\\.rs$' > out.txt 2>&1",
    "    \n\t\t\n        return None\n",
]


def lax_decode(b):
    """llama.cpp's unicode_cpts_from_utf8 (to reject inputs it aborts on)."""
    out, i = [], 0
    cont = lambda x: (x & 0xC0) == 0x80
    while i < len(b):
        c = b[i]
        if not c & 0x80:
            out.append(c); i += 1
        elif not c & 0x40:
            out.append(0xFFFD); i += 1
        elif not c & 0x20:
            if i + 1 < len(b) and cont(b[i + 1]):
                out.append(((c & 0x1F) << 6) | (b[i + 1] & 0x3F)); i += 2
            else:
                out.append(0xFFFD); i += 1
        elif not c & 0x10:
            if i + 2 < len(b) and cont(b[i + 1]) and cont(b[i + 2]):
                out.append(((c & 0x0F) << 12) | ((b[i + 1] & 0x3F) << 6) | (b[i + 2] & 0x3F)); i += 3
            else:
                out.append(0xFFFD); i += 1
        elif not c & 0x08:
            if i + 3 < len(b) and cont(b[i + 1]) and cont(b[i + 2]) and cont(b[i + 3]):
                out.append(((c & 0x07) << 18) | ((b[i + 1] & 0x3F) << 12) | ((b[i + 2] & 0x3F) << 6)
                           | (b[i + 3] & 0x3F)); i += 4
            else:
                out.append(0xFFFD); i += 1
        else:
            out.append(0xFFFD); i += 1
    return out


def rand_script(r, name, n):
    return "".join(r.choice(SCRIPTS[name]) for _ in range(n))


def rand_codepoint(r):
    while True:
        kind = r.random()
        if kind < 0.5:
            cp = r.randrange(0x20, 0x3000)
        elif kind < 0.8:
            cp = r.randrange(0x3000, 0x10000)
        else:
            cp = r.randrange(0x10000, 0x110000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def fragment(r):
    k = r.randrange(12)
    if k == 0:
        return r.choice(CODE)
    if k == 1:
        name = r.choice(list(SCRIPTS))
        return rand_script(r, name, r.randrange(1, 12))
    if k == 2:
        return "".join(r.choice(EMOJI) for _ in range(r.randrange(1, 4)))
    if k == 3:
        return "".join(r.choice(SCRIPTS["space"]) for _ in range(r.randrange(1, 8)))
    if k == 4:
        return "".join(r.choice("0123456789") for _ in range(r.randrange(1, 15)))
    if k == 5:
        return r.choice(SPECIALS)
    if k == 6:
        return "".join(rand_codepoint(r) for _ in range(r.randrange(1, 6)))
    if k == 7:
        w = r.choice(WORDS)
        return unicodedata.normalize(r.choice(["NFC", "NFD", "NFKC"]), w) if r.random() < 0.3 else w
    if k == 8:
        return " " * r.randrange(1, 6) + r.choice(WORDS)
    if k == 9:
        return rand_script(r, "latin", r.randrange(1, 3)) + rand_script(r, "marks", r.randrange(1, 3))
    if k == 10:
        return r.choice(["'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'", "''"])
    return rand_script(r, "punct", r.randrange(1, 6)) + r.choice(["", "\n", "\r\n", "\n\n"])


def invalid_bytes(r, b):
    k = r.randrange(6)
    if k == 0 and len(b) > 1:
        cut = r.randrange(1, len(b))
        return b[:cut]  # may cut a character
    if k == 1:
        i = r.randrange(len(b) + 1)
        return b[:i] + bytes([r.randrange(0x80, 0xC0)]) + b[i:]  # stray continuation byte
    if k == 2:
        return b + r.choice([b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf"])  # overlong
    if k == 3:
        return b + r.choice([b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80"])  # surrogates
    if k == 4:
        return b + bytes([r.choice([0xF8, 0xFC, 0xFE, 0xFF, 0xC3, 0xE2, 0xF0])])  # bad/dangling lead
    cut = r.randrange(len(b) + 1)
    return b[:cut] + b"\xe2\x82" + b[cut:]  # truncated sequence in the middle


def generate(r, count):
    cases = []
    while len(cases) < count:
        s = "".join(fragment(r) for _ in range(r.randrange(1, 8)))
        b = s.encode("utf-8")
        if r.random() < 0.12:
            b = invalid_bytes(r, b)
        if any(cp > 0x10FFFF for cp in lax_decode(b)):
            continue
        cases.append((b, r.random() < 0.4))
    # Fixed edge cases.
    for s in ["", " ", "  ", "\n", "\r\n", " \n ", "a", "'", "''s", "<|im_start|>", "<|im_start|><|im_end|>",
              "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
              "x" * 3000, " " * 500 + "y", "\n" * 100, "9" * 400, "é" * 300, "😀" * 100]:
        for ps in (False, True):
            cases.append((s.encode("utf-8"), ps))
    return cases


def detokenize(llm, ids, special):
    """llama_detokenize with a large enough buffer (llama-cpp-python's own detokenize uses a
    32-byte buffer per token and silently drops longer pieces)."""
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    cap = 64 + 16 * len(ids)
    while True:
        buf = ctypes.create_string_buffer(cap)
        n = llama_cpp.llama_detokenize(llm._model.vocab, arr, len(ids), buf, cap, False, special)
        if n >= 0:
            return buf.raw[:n]
        cap = -n + 16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", default="1234", help="an integer, or 'random'")
    ap.add_argument("--count", type=int, default=2500)
    a = ap.parse_args()
    seed = int.from_bytes(os.urandom(4), "little") if a.seed == "random" else int(a.seed)
    print(f"tokenizer-oracle: seed {seed}, {a.count} generated cases", file=sys.stderr)
    r = random.Random(seed)
    llm = llama_cpp.Llama(model_path=a.vocab, vocab_only=True, verbose=False)
    out = []
    for b, ps in generate(r, a.count):
        ids = llm.tokenize(b, add_bos=False, special=ps)
        out.append({
            "input": base64.b64encode(b).decode(),
            "parse_special": ps,
            "ids": ids,
            "detok": base64.b64encode(detokenize(llm, ids, False)).decode(),
            "detok_special": base64.b64encode(detokenize(llm, ids, True)).decode(),
        })
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"vocab": os.path.basename(a.vocab), "seed": seed, "cases": out}, f)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}: {len(out)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
