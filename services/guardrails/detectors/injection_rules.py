"""Rule layer of the injection detector: patterns of well-known attack techniques, in several languages.

The patterns follow published attack taxonomies (instruction override, role hijack, restriction removal,
system-prompt extraction, forged chat-template delimiters), not the rows of any data set. They run on the
normalised views (lower case, homoglyphs folded), so they stay short. Languages: English, German, French,
Spanish, Italian and Portuguese; instruction override and secret requests also in Russian/Ukrainian,
Turkish, Arabic, Hindi, Bengali, Vietnamese, Indonesian/Malay, Filipino, Thai, Chinese, Japanese and Korean
(`injection_rules_i18n.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One regular expression with the technique it detects and how sure a match makes us."""

    name: str
    category: str
    score: float
    pattern: re.Pattern[str]
    reason: str
    anchors: tuple[str, ...]  # substrings every match contains: a cheap test that skips most texts


def _r(name: str, category: str, score: float, reason: str, anchors: str, *alternatives: str) -> Rule:
    pattern = re.compile("|".join(f"(?:{a})" for a in alternatives))
    return Rule(name, category, score, pattern, reason, tuple(anchors.split("|")))


_PREV_EN = r"(?:previous|prior|preceding|above|earlier|former|original|initial|system|all|any|your|the)"
_INSTR_EN = (
    r"(?:instructions?|rules|prompts?|directions|guidelines|directives|commands|context|programming|restrictions"
    r"|messages|conversation|tasks?|text|content|inputs?)"
)
_SECRET_EN = (
    r"(?:secret(?:\s+(?:key|word|code|phrase|token))?|password|passcode|passphrase|api\s+key|private\s+key"
    r"|access\s+token)"
)

RULES: tuple[Rule, ...] = (
    _r(
        "override_instructions",
        "prompt_injection",
        0.95,
        "asks the model to ignore or replace the instructions it was given",
        "ignor|disregard|forget|skip|overrid|bypass|drop|abandon|vergiss|vergesst|missacht|überschreib|oubli|néglige"
        "|olvid|olvíd|omite|descarta|dimentica|trascura|esqueç|esquec|desconsidere|new|neue|nouvelles|nuevas|nuove",
        rf"\b(?:ignore|disregard|forget|skip|override|bypass|drop|abandon)\b(?:\W+\w+){{0,3}}?\W+{_PREV_EN}\W+(?:\w+\W+){{0,2}}{_INSTR_EN}\b",
        r"\b(?:ignorier\w*|vergiss|vergesst|missacht\w*|überschreib\w*)\b(?:\W+\w+){0,4}?\W+(?:anweisung\w*|instruktion\w*|regeln|vorgaben|befehl\w*|richtlinien)",
        r"\bvergiss\w*\s+(?:alles|alle)\b",
        # "forget everything (above)" in each language
        r"\b(?:forget|disregard|ignore)\s+(?:everything|all\s+(?:of\s+)?(?:that|the\s+above))\b",
        r"\b(?:oublie[rz]?|ignore[rz]?)\s+tout\b|\b(?:olvida[d]?|ignora)\s+todo\b|\b(?:dimentica|ignora)\s+tutto\b",
        r"\b(?:esque[çc]a|ignore)\s+tudo\b",
        r"\b(?:ignore[rz]?|oublie[rz]?|oubliez|néglige[rz]?)\b(?:\W+\w+){0,4}?\W+(?:instructions?|consignes?|règles|directives)",
        r"\b(?:ignora|ignore|ignorar|ignoren|ignorad|olvida|olvide|olvidar|olvidad|olvídate|omite|descarta)\b(?:\W+\w+){0,4}?\W+(?:instrucci\w+|reglas|indicaciones|[oó]rdenes|directrices)",
        r"\b(?:ignora|dimentica|trascura)\b(?:\W+\w+){0,4}?\W+(?:istruzion\w|regole|indicazioni|direttive)",
        r"\b(?:ignore|ignora|esqueça|esqueca|desconsidere)\b(?:\W+\w+){0,4}?\W+(?:instru[cç][õo]es|regras|diretrizes)",
        r"\bnew\s+(?:instructions|rules|system\s+prompt)\s*:",
        r"\b(?:neue\s+anweisung\w*|nouvelles\s+(?:instructions|consignes)|nuevas\s+instrucciones|nuove\s+istruzioni)\s*:",
    ),
    _r(
        "role_hijack",
        "jailbreak",
        0.85,
        "tries to give the model a new identity that is not bound by its rules",
        "you|dan|anything|developer mode|jailbreak|pretend|act|behave|role|du bist|bist du|tu es|eres",
        r"\b(?:you\s+are|you're)\s+(?:now\s+)?(?:in\s+)?(?:dan|developer\s+mode|god\s+mode|jailbroken|unfiltered|uncensored|unrestricted|evil)\b",
        r"\b(?:do\s+anything\s+now|dan\s+mode|developer\s+mode\s+(?:enabled|output|on)|jailbreak(?:ed)?\s+mode)\b",
        r"\b(?:pretend|act|behave|roleplay|role-play)\b(?:\W+\w+){0,4}?\W+(?:unfiltered|uncensored|unrestricted|no\s+(?:rules|filters|limits|restrictions)|evil|amoral|without\s+(?:any\s+)?(?:rules|filters|restrictions|limits))",
        r"\b(?:du\s+bist\s+(?:jetzt|nun|ab\s+sofort)|ab\s+(?:jetzt|sofort)\s+bist\s+du)\b(?:\W+\w+){0,4}?\W+(?:ohne|uneingeschränkt|unzensiert|frei\s+von)",
        r"\b(?:tu\s+es\s+(?:maintenant|désormais)|à\s+partir\s+de\s+maintenant,?\s+tu\s+es)\b(?:\W+\w+){0,4}?\W+(?:sans|libre|non\s+censur)",
        r"\b(?:ahora\s+eres|a\s+partir\s+de\s+ahora\s+eres|desde\s+ahora\s+eres)\b(?:\W+\w+){0,4}?\W+(?:sin|libre|sin\s+censura)",
    ),
    _r(
        "remove_restrictions",
        "jailbreak",
        0.75,
        "asks the model to drop its safety rules, filters or ethics",
        "without|no|n't|free|ignore|never|break|bound|ohne|keine|sans|sin",
        r"\b(?:without|no|free\s+(?:of|from)|ignore\s+(?:all|any|your))\s+(?:any\s+)?(?:ethical|moral|safety|content)?\s*(?:restrictions|filters?|censorship|guidelines|limitations|boundaries|morals|ethics)\b(?:\W+\w+){0,6}?\W+(?:answer|respond|reply|comply|generate|say|write)",
        r"\b(?:(?:doesn't|does\s+not|don't|do\s+not|never)\s+(?:have\s+to\s+)?(?:follow|abide\s+by|care\s+about|adhere\s+to)|(?:break|broken\s+free\s+of)|is\s+not\s+bound\s+by)\s+(?:\w+\s+){0,3}(?:rules|guidelines|policies|policy|restrictions|openai|ethics|content\s+policy)\b",
        r"\b(?:ohne|keine)\s+(?:jegliche\s+)?(?:ethischen\s+|moralischen\s+)?(?:einschränkungen|filter|zensur|regeln|richtlinien)\b",
        r"\bsans\s+(?:aucune\s+)?(?:restriction|censure|filtre|limite|règle)s?\b(?:\W+\w+){0,6}?\W+(?:répond|réponds|répondre|dis|écris)",
        r"\bsin\s+(?:ninguna\s+)?(?:restricci[oó]n|restricciones|censura|filtros?|l[ií]mites?|reglas)\b(?:\W+\w+){0,6}?\W+(?:responde|contesta|di|escribe)",
    ),
    _r(
        "prompt_extraction",
        "prompt_extraction",
        0.85,
        "asks the model to reveal its hidden system prompt or initial instructions",
        "prompt|instruction|text above|anweisung|instrucciones",
        r"\b(?:reveal|show|print|display|repeat|output|tell\s+me|give\s+me|leak|dump|what\s+(?:is|are|was|were))\b(?:\W+\w+){0,3}?\W+(?:system\s+prompt|initial\s+(?:instructions|prompt)|hidden\s+(?:instructions|prompt)|original\s+(?:instructions|prompt)|pre-?prompt|instructions\s+above|text\s+above)",
        r"\b(?:zeig\w*|gib|wiederhol\w*|verrat\w*|nenn\w*)\b(?:\W+\w+){0,3}?\W+(?:system-?\s?prompt|anfangsanweisung\w*|ursprünglichen\s+anweisungen)",
        r"\b(?:révèle\w*|montre\w*|affiche\w*|répète\w*|donne\w*)\b(?:\W+\w+){0,3}?\W+(?:prompt\s+(?:système|systeme|initial)|instructions\s+(?:initiales|système|cachées))",
        r"\b(?:revela|muestra|mu[eé]strame|repite|dime|imprime)\b(?:\W+\w+){0,3}?\W+(?:prompt\s+(?:del\s+)?sistema|instrucciones\s+(?:iniciales|del\s+sistema|ocultas))",
    ),
    _r(
        "forged_delimiters",
        "prompt_injection",
        0.8,
        "contains chat-template or role markers that try to start a new system turn",
        "<|[inst]|[/inst]|<<|<system|</system|#|system|assistant",
        r"<\|(?:im_start|im_end|system|endoftext|start_header_id|end_header_id|eot_id)\|>",
        r"\[/?inst\]|<</?sys>>|<\/?system>",
        # "### Instruction:", "## SYSTEM ##": a heading that is a role marker. Not "## System requirements" or
        # "## Instructions", the headings of every README (they need the colon or the closing #).
        r"(?:^|\n)\s*#{2,}\s*(?:system|instructions?|new\s+instructions?)\s*(?::|#)",
        r"(?:^|\n)\s*(?:system|assistant)\s*:\s*(?:you|ignore|new|from\s+now)",
    ),
)


RULES = (
    *RULES,
    _r(
        "task_replacement",
        "prompt_injection",
        0.85,
        "announces new instructions or a new task that replaces the one the model was given",
        "instruction|task|directive|goal|objective|instead|from now",
        # "*** NEW IMPORTANT INSTRUCTIONS ***", "[updated instructions]": a banner that opens a new task
        r"[*#=\[<]{1,}\s*(?:new|updated|important|urgent)\s+(?:(?:important|urgent|system)\s+)?(?:instructions?|task|directives?)\s*[*#=\]>:!]",
        r"\byour\s+(?:new|real|actual|only)\s+(?:task|goal|instruction|objective)\s+(?:is|will\s+be)\b",
        r"\b(?:instead|from\s+now\s+on),?\s+(?:you\s+(?:must|will|should)|your\s+task\s+is)\b",
    ),
    _r(
        "fake_privileged_mode",
        "jailbreak",
        0.85,
        "claims to switch the model into a privileged mode (developer, debug, admin, test) without its rules",
        "mode",
        r"\b(?:enter|enable|activate|switch\s+(?:in)?to|turn\s+on|you\s+are\s+(?:now\s+)?in|now\s+in|running\s+in)\s+"
        r"(?:the\s+)?(?:developer|dev|debug|debugging|admin|administrator|god|maintenance|unrestricted|jailbreak|dan|sudo|root)\s+mode\b",
    ),
    _r(
        "secret_request",
        "prompt_extraction",
        0.8,
        "asks the model to disclose a secret, password or key it was given",
        "secret|password|passcode|passphrase|key|token",
        rf"\b(?:reveal|tell\s+me|give\s+me|share|print|show|output|disclose|spell\s+out|what\s+is|what's|whats)\s+(?:me\s+)?your\s+{_SECRET_EN}\b",
        rf"\b(?:reveal|tell\s+me|disclose|spell\s+out|print)\s+the\s+{_SECRET_EN}\b",
    ),
    _r(
        "response_tampering",
        "prompt_injection",
        0.75,
        "text addressed to the model that dictates what its answer must contain (typical of planted instructions)",
        "your response|your answer|your output",
        r"\b(?:include|add|insert|append|prepend|output|print|render|embed)\s+(?:the\s+following|exactly|verbatim"
        r"|these\s+words|this\s+(?:text|link|image|sentence|message|string|code|url|markdown|html))"
        r"(?:\W+\w+){0,8}?\W+(?:in|into|to|at\s+the\s+(?:end|start|beginning)\s+of)\s+your\s+(?:response|answer|output)\b",
    ),
    _r(
        "markdown_exfiltration",
        "data_exfiltration",
        0.8,
        "a markdown image whose URL has a slot for data in its query string (renders as a silent request to an "
        "attacker, carrying what the model filled in)",
        "![",
        # The query value must be a slot the model is to fill: a placeholder ([QUERY], {data}, <OUTPUT>, $X, or
        # their URL encodings), a name of what to leak (data, secret, history...), or nothing at the end of the
        # URL. A plain query string is what every README badge has (`badge.svg?branch=main`): matching any
        # `?k=v` flagged package documentation. (The views are lower case.)
        r"!\[[^\]\n]{0,200}\]\(\s*https?://[^)\s]{1,300}?[?&][^)\s=&]{1,40}="
        r"(?:[\[{<$]|%(?:5b|7b|3c|24)|(?:data|secrets?|password|history|conversation|chat|summary|query|output"
        r"|info|payload|answer|response)(?=[)&\s])|(?=\)))",
        r"!\[[^\]\n]{0,200}\]\(\s*https?://[^)\s]{1,300}?(?:\{|%7b|<|%3c)",  # a {slot} anywhere in the URL
    ),
    _r(
        "system_override",
        "prompt_injection",
        0.8,
        "a forged system or administrator message inside the text",
        "override|system|admin|developer|root",
        r"(?:^|[\n\[(<*#])\s*(?:system|admin|administrator|developer|root)\s+(?:override|message|notice|instruction|update)\s*[:\])>*]",
    ),
)

_AI_EN = (
    r"(?:ai|a\.i\.|llm|large\s+language\s+model|language\s+model|chatbot|ai\s+(?:assistant|agent|model|system)"
    r"|gpt|chatgpt|claude|copilot|gemini)"
)
_DO_EN = (
    r"(?:ignore|forget|send|forward|e-?mail|transfer|delete|reveal|print|output|include|add|tell|do\s+not|don't"
    r"|instead|stop|write|say|reply|respond|summari[sz]e|translate|execute|run|click|visit|open|grant|share|make)"
)

RULES = (
    *RULES,
    _r(
        "addressed_to_model",
        "prompt_injection",
        0.8,
        "text inside data that addresses the AI reading it and gives it an order (an indirect injection: a "
        "document, e-mail or tool result talks to the assistant, not to its human reader)",
        "ai|a.i.|llm|model|chatbot|gpt|claude|copilot|gemini|assistant|user|instruction|summari|process|parse",
        # "If you are an AI (reading this)...", "Note to the AI model:", "AI assistant: ignore ...", and
        # "assistant, please also ...": a human reader is not called an AI, and a human assistant is not told
        # to *also* do something in the same breath as the message they are reading.
        rf"\b(?:if|when|whenever)\s+you\s+are\s+(?:an?\s+)?{_AI_EN}\b",
        rf"\b(?:note|message|instructions?|attention|reminder|request)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?{_AI_EN}s?\b\s*[:,!-]",
        rf"(?:^|[\n.!>*#\]]\s*|\b(?:dear|hey|hi|hello)\s+){_AI_EN}\s*[,:]\s*(?:please\s+)?(?:also\s+)?{_DO_EN}\b",
        rf"\b(?:ai\s+)?assistant\s*[,:]\s*(?:please\s+)?also\s+{_DO_EN}\b",
        r"\b(?:important|urgent|attention|notice)\s*[:!]+\s*(?:\w+\s+){0,2}(?:new|updated|additional|revised)\s+instructions?\b",
        rf"\bnew\s+instructions?\s+(?:for|to)\s+(?:the\s+|any\s+)?(?:{_AI_EN}|assistant|agent|model)\b",
        r"\bignore\s+(?:the\s+|your\s+)?(?:user'?s?|human'?s?)\s+(?:original\s+)?(?:request|question|query|instructions?|prompt|task)",
        r"(?:^|[\n.!:]\s*)(?:do\s+not|don't|never)\s+(?:tell|inform|notify|alert|warn|let)\s+the\s+user\b",
        r"\bthe\s+user\s+(?:must|should)\s+(?:not|never)\s+(?:know|find\s+out|be\s+(?:told|informed|notified))\b",
        rf"\bwhen\s+(?:you|the\s+(?:{_AI_EN}|assistant|model|agent))\s+(?:summari[sz]e|process|parse)s?\s+this\b",
    ),
)

# The same two techniques in thirteen more languages (injection_rules_i18n.py, which needs `Rule` from here).
from services.guardrails.detectors.injection_rules_i18n import I18N_RULES  # noqa: E402

RULES = (*RULES, *I18N_RULES)


@dataclass(frozen=True)
class RuleHit:
    """A match of one rule on one view, with the span in that view's text."""

    rule: Rule
    start: int
    end: int


# Text that *describes* the technique rather than using it: "the attack asks the model to ignore the
# instructions", "nothing tries to override the model's instructions" (documentation, papers, this service's
# own finding reasons). A match right after such words is skipped and the search goes on, so a document that
# describes an attack and also carries one is still caught. Third person only: "I need you to ignore..." and
# "try to ignore..." address the reader and still match.
_DESCRIBED = re.compile(
    r"\b(?:tries|tried|trying|attempts?|attempted|attempting|asks|asked|asking|tells|told|telling|tricks|tricked"
    r"|tricking|gets|makes|made|causes|convinces|persuades)\s+(?:(?:the|a|an|its)\s+)?"
    r"(?:(?:model|assistant|llm|ai|bot|chatbot|agent)\s+)?to\s*$"
)
_DESCRIBABLE = frozenset({"override_instructions", "prompt_extraction"})


def _described(text: str, start: int) -> bool:
    return bool(_DESCRIBED.search(text[max(0, start - 60) : start]))


def match_rules(text: str, rules: tuple[Rule, ...] = RULES) -> list[RuleHit]:
    """Every rule's first match in `text` (one per rule keeps the answer short and the cost linear)."""
    hits: list[RuleHit] = []
    for rule in rules:
        if not any(anchor in text for anchor in rule.anchors):
            continue
        found = rule.pattern.search(text)
        skips = 0  # bounded: a text made of descriptions stops being one after 20 (and the cost stays linear)
        while found and rule.name in _DESCRIBABLE and skips < 20 and _described(text, found.start()):
            found = rule.pattern.search(text, found.start() + 1)
            skips += 1
        if found:
            hits.append(RuleHit(rule, found.start(), found.end()))
    return hits
