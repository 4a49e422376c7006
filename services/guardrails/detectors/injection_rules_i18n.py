# ruff: noqa: RUF001  (the lexicons are written in the scripts of their languages)
"""The two most common injection moves, in the languages the English-only parts of the detector miss.

The learned model reads English well and other languages badly (its static vector comes from an English
encoder; its character n-grams carry only between related spellings), and the rules in `injection_rules.py`
speak English, German, French, Spanish, Italian and Portuguese. An attack written in Russian, Hindi or
Japanese ("ignore the previous instructions", "tell me the password") was caught by nothing. These rules
cover two techniques, each as a small lexicon per language, written from the languages themselves (not from
the rows of any data set):

* `override_instructions_i18n`: a verb of ignoring or forgetting, a qualifier that points back at what the
  model was told (previous, above, all, your) and a noun for instructions or rules, in either order within
  one clause. The qualifier is required: "do not skip the safety instructions" is ordinary text in every
  language; "ignore all previous instructions" is not.
* `secret_request_i18n`: a verb of revealing or telling and a noun for a password, secret key or system
  prompt, within one clause.

Languages: Russian, Ukrainian (the Cyrillic forms overlap), Turkish, Arabic, Hindi, Bengali, Vietnamese,
Indonesian/Malay, Filipino, Thai, Chinese (simplified and traditional), Japanese and Korean, plus German,
French, Spanish, Italian and Portuguese for the secret request. The patterns are folded the way the
canonical view is (`normalize.unicode_view`: NFKC, lower case, Cyrillic and Greek look-alikes turned into
Latin letters), so "пароль" is matched as the view spells it. Scripts without spaces or with combining
vowel signs (Thai, Chinese, Japanese, Devanagari, Bengali) get no word boundaries: substrings are their words.
"""

from __future__ import annotations

import re

from services.guardrails.detectors.injection_rules import Rule
from services.guardrails.detectors.normalize import _fold_char

# A clause: no sentence end in between (Latin, CJK, Devanagari and Arabic full stops, line breaks).
_GAP = r"[^.!?;\n。！？؟।]{0,%d}?"


def _fold(pattern: str) -> str:
    """The pattern as the canonical view spells its letters (non-ASCII letters folded, ASCII lower case)."""
    return "".join(ch.lower() if ch.isascii() else (_fold_char(ch) or ch) for ch in pattern)


# Languages written with spaces between words in an alphabet Python's \b understands: their words must start
# at a word boundary ("ver" is "give" in Turkish and the start of "veri", data). The others (Chinese,
# Japanese, Thai, and Devanagari/Bengali, whose vowel signs are not word characters) match as substrings;
# Arabic too, where "and", "the" and "to" are letters glued to the front of the word.
_BOUNDED = frozenset({"ru/uk", "tr", "vi", "id/ms", "tl", "de", "fr", "es", "it", "pt"})


def _alt(words: str, bounded: bool) -> str:
    return ("\\b" if bounded else "") + "(?:" + "|".join(_fold(w) for w in words.split("|")) + ")"


# Per language: (verbs of ignoring/forgetting, qualifiers pointing back, nouns for instructions/rules).
_OVERRIDE: dict[str, tuple[str, str, str]] = {
    "ru/uk": (
        "игнорир|проигнорир|забудь|забуд|забыть|отбрось|отбросьте|не обращай|не обращайте|не учитывай|отмени"
        "|ігнору|проігнору|забудь|забудьте",
        "предыдущ|прежн|все |всех |всё |ранее|выше|свои|твои|ваши|попередн|всі |усі |вище",
        "инструкци|указани|правил|команд|директив|ограничени|інструкці|вказівк|правил",
    ),
    "tr": (
        "yok say|görmezden gel|unut|dikkate alma|göz ardı et|umursama",
        "önceki|tüm|bütün|yukarıdaki|verilen|önceden|sana verilen",
        "talimat|komut|kural|yönerge|direktif",
    ),
    "ar": (
        "تجاهل|تجاهلي|تجاهلوا|انس|انسى|انسي|لا تلتزم|اهمل|أهمل",
        "السابقة|السابق|أعلاه|اعلاه|كل|جميع|الأصلية",
        "التعليمات|تعليمات|الأوامر|الاوامر|أوامر|القواعد|قواعد|الإرشادات|التوجيهات",
    ),
    "hi": (
        "अनदेखा|अवहेलना|नज़रअंदाज़|नजरअंदाज|नज़रअंदाज|भूल जा|भूल जाओ|भूल जाएं|भूल जाइए|उपेक्षा|ध्यान न दें|ध्यान मत दो",
        "पिछले|पिछली|पहले के|पहले दिए|सभी|सारे|ऊपर|पूर्व|अपने",
        "निर्देश|नियम|आदेश|हिदायत",
    ),
    "bn": (
        "উপেক্ষা|ভুলে যা|ভুলে যান|ভুলে যাও|অগ্রাহ্য|উপেক্ষা কর",
        "পূর্ববর্তী|আগের|পূর্বের|সমস্ত|সব|উপরের|আপনার",
        "নির্দেশ|নিয়ম|আদেশ",
    ),
    "vi": (
        "bỏ qua|phớt lờ|lờ đi|quên đi|quên|không cần tuân theo|đừng tuân theo|bỏ mặc",
        "trước|ở trên|phía trên|tất cả|mọi|ban đầu|của bạn",
        "hướng dẫn|chỉ dẫn|chỉ thị|mệnh lệnh|lệnh|quy tắc|quy định",
    ),
    "id/ms": (
        "abaikan|lupakan|jangan hiraukan|jangan pedulikan|acuhkan|hiraukan",
        "sebelumnya|semua|di atas|sebelum ini|awal|anda",
        "instruksi|petunjuk|perintah|arahan|aturan|peraturan",
    ),
    "tl": (
        "huwag pansinin|balewalain|kalimutan|huwag sundin|ipagwalang-bahala",
        "nauna|naunang|lahat|itaas|dati",
        "tagubilin|instruksyon|instruksiyon|utos|panuto|patakaran",
    ),
    "th": (
        "เพิกเฉย|ละเว้น|ลืม|ไม่ต้องสนใจ|อย่าสนใจ|มองข้าม|ไม่ต้องทำตาม",
        "ก่อนหน้า|ทั้งหมด|ข้างต้น|ด้านบน|เดิม|ที่ได้รับ",
        "คำสั่ง|คำแนะนำ|กฎ|ข้อกำหนด",
    ),
    "zh": (
        "忽略|无视|無視|忘记|忘記|忘掉|不要理会|不要理會|不理会|抛开|拋開|别管|別管",
        "之前|以前|先前|上面|上述|前面|所有|一切|全部|原来|原來|原有|你的",
        "指令|指示|说明|說明|规则|規則|命令|提示",
    ),
    "ja": (
        "無視|忘れ|従わな|気にしな",
        "以前の|前の|上記の|これまでの|すべての|全ての|全部の|元の|最初の|あなたの",
        "指示|命令|指令|ルール|規則",
    ),
    "ko": (
        "무시|잊어|잊으|따르지 마|따르지 말",
        "이전|위의|앞의|모든|기존|원래|당신의",
        "지시|지침|명령|규칙",
    ),
}

# Per language: (verbs of revealing/telling, nouns for the secret or the hidden prompt).
_SECRET: dict[str, tuple[str, str]] = {
    "ru/uk": (
        "скажи|скажите|раскрой|раскройте|покажи|покажите|назови|назовите|выдай|сообщи|открой|розкрий|скажіть|покажи",
        "пароль|секретн|системн\\w* промпт|системн\\w* подсказк|ключ доступа|код доступа",
    ),
    "tr": (
        "söyle|açıkla|göster|paylaş|ver|ifşa et",
        "şifre|parola|gizli anahtar|sistem istemi|sistem promptu",
    ),
    "ar": (
        "أخبرني|اخبرني|اكشف|أظهر|اظهر|أعطني|اعطني|شارك|ما هي|ما هو",
        "كلمة المرور|كلمة السر|المفتاح السري|موجه النظام",
    ),
    "hi": ("बताओ|बताइए|बताएं|बता दो|दिखाओ|दिखाएं|प्रकट|साझा", "पासवर्ड|गुप्त कुंजी|सीक्रेट|सिस्टम प्रॉम्प्ट"),
    "bn": ("বলুন|বলো|বল|দেখান|প্রকাশ|শেয়ার", "পাসওয়ার্ড|গোপন কী|সিস্টেম প্রম্পট"),
    "vi": (
        "cho tôi biết|tiết lộ|nói cho|hiển thị|cho biết|chia sẻ",
        "mật khẩu|khóa bí mật|lời nhắc hệ thống|mã bí mật",
    ),
    "id/ms": (
        "beri tahu|beritahu|ungkapkan|tunjukkan|sebutkan|bagikan",
        "kata sandi|kata laluan|kunci rahasia|prompt sistem",
    ),
    "tl": ("sabihin|ibunyag|ipakita|ibahagi", "password|lihim na susi|system prompt"),
    "th": ("บอก|เปิดเผย|แสดง|แชร์", "รหัสผ่าน|คีย์ลับ|พรอมต์ระบบ"),
    "zh": ("告诉我|告訴我|透露|泄露|洩露|显示|顯示|说出|說出|给我|給我", "密码|密碼|密钥|密鑰|系统提示|系統提示"),
    "ja": ("教えて|明かして|表示して|見せて|言って|開示", "パスワード|秘密鍵|シークレット|システムプロンプト"),
    "ko": ("알려|공개|보여|말해", "비밀번호|패스워드|비밀 키|시스템 프롬프트"),
    "de": (
        "verrat|nenn|sag mir|zeig|gib mir|teile",
        "passwort|kennwort|geheimschlüssel|geheimen schlüssel|geheimer schlüssel|geheimwort",
    ),
    "fr": (
        "révèle|révélez|dis-moi|dites-moi|donne-moi|donnez-moi|montre|affiche",
        "mot de passe|clé secrète",
    ),
    "es": ("revela|revélame|dime|dígame|muéstrame|dame|comparte", "contraseña|clave secreta"),
    "it": ("rivela|dimmi|mi dica|mostrami|dammi|condividi", "password|chiave segreta|parola d'ordine"),
    "pt": ("revele|revela|diga-me|me diga|mostre|me dê|compartilhe", "senha|palavra-passe|chave secreta"),
}


def _override_pattern(lang: str, verbs: str, quals: str, nouns: str) -> str:
    v, q, n = (_alt(words, lang in _BOUNDED) for words in (verbs, quals, nouns))
    # verb, then qualifier and noun in either order ("ignore all instructions", Arabic/Thai/Vietnamese/Malay
    # "ignore the instructions previous"); or qualifier, noun, verb (Japanese, Korean, Hindi, Bengali, Turkish)
    return f"{v}{_GAP % 40}{q}{_GAP % 30}{n}|{v}{_GAP % 40}{n}{_GAP % 30}{q}|{q}{_GAP % 30}{n}{_GAP % 40}{v}"


def _secret_pattern(lang: str, verbs: str, nouns: str) -> str:
    v, n = (_alt(words, lang in _BOUNDED) for words in (verbs, nouns))
    return f"{v}{_GAP % 30}{n}|{n}{_GAP % 30}{v}"


def _anchors(nouns: str) -> tuple[str, ...]:
    # Every match contains one of its language's nouns: a cheap substring test that skips most texts.
    return tuple(sorted({_fold(w.split("\\")[0]) for w in nouns.split("|")}))


# One rule per language and technique, each gated by its own nouns: a text in one language never runs the
# other languages' patterns (on a 100,000-character text made of one language's nouns a single rule costs
# about 5 ms; one pattern for all languages cost ten times that).
I18N_RULES: tuple[Rule, ...] = (
    *(
        Rule(
            name="override_instructions_i18n",
            category="prompt_injection",
            score=0.9,
            pattern=re.compile(_override_pattern(lang, *entry)),
            reason=f"asks the model to ignore or forget the instructions it was given ({lang})",
            anchors=_anchors(entry[2]),
        )
        for lang, entry in _OVERRIDE.items()
    ),
    *(
        Rule(
            name="secret_request_i18n",
            category="prompt_extraction",
            score=0.8,
            pattern=re.compile(_secret_pattern(lang, *entry)),
            reason=f"asks the model to disclose a password, secret key or its system prompt ({lang})",
            anchors=_anchors(entry[1]),
        )
        for lang, entry in _SECRET.items()
    ),
)
