"""Plainly harmful requests: a request for help with serious harm, as its own finding category.

A harmful request ("how do I make a pipe bomb", "write a phishing e-mail to steal bank logins") is not a
prompt injection: nothing in it tries to override the model's instructions, and the injection models do not
learn from such rows (training/fit.py `HARMFUL_REQUEST_SOURCES`). A learned detector for them was measured
and failed (bench/results/guardrails_encoder_loso.md: trained on one harmful set, it found 1-4 % of the
other at a 1 % false-positive budget, because CyberSecEval's benign security prompts read the same to it).
What is left is the obvious part, written as rules from the usual harm taxonomies (weapons and
explosives, killing and hurting people, hard drugs, theft and fraud, breaking into other people's
accounts and systems, self-harm, hate and harassment, abuse of children), never from the rows of a data set:
an act or object of harm that can only be meant one way, asked for by a request (how to, a guide, write,
make). Words with an ordinary meaning as well ("kill a process", "attack surface", "a photobomb", "drug
interactions") need a human victim or a harmful object next to them.

Category `harmful_request`, checked in input mode only (a news article about a bombing is a document, not a
request); the policy decides what it does (`injection.actions.harmful_request`).
"""

from __future__ import annotations

import re

from services.guardrails.detectors.injection_rules import Rule, RuleHit

CATEGORY = "harmful_request"

# A person as the target of harm (not a process, a file or a bug).
_PERSON = (
    r"(?:someone|somebody|anyone|people|a\s+person|persons|others|another\s+person|my\s+(?:wife|husband|partner"
    r"|boss|neighbou?r|ex|teacher|classmate|coworker|co-worker|family|parents?|mother|father|brother|sister|friend)"
    r"|a\s+(?:child|kid|woman|man|girl|boy|stranger|police\s+officer|politician|celebrity)|children|kids|women"
    r"|civilians|a\s+crowd|crowds|humans|him|her|them|the\s+president|a\s+public\s+figure)"
)
_REQUEST = (
    r"(?:how\s+(?:do|can|could|would|should|might)\s+(?:i|we|you|one|someone|a\s+person)|how\s+to|ways?\s+to"
    r"|best\s+way\s+to|steps?\s+to|step-by-step|guide|tutorial|instructions|teach\s+me|show\s+me|explain\s+how"
    r"|help\s+me|write|create|develop|design|generate|produce|draft|give\s+me|provide|outline|describe\s+how"
    r"|plan\s+(?:to|for|a|an)|i\s+want\s+to|i\s+need\s+to)"
)

_HARM_ACTS: tuple[tuple[str, str], ...] = (  # (words one of which every match contains, pattern)
    # weapons and explosives
    (
        "bomb|explosiv|ied|molotov|grenade|napalm|nerve|weapon|firearm|gun|silencer|vest|poison",
        r"(?:make|build|assemble|construct|create|manufacture|produce)\s+(?:(?:a|an|my\s+own|homemade|home-made"
        r"|improvised|deadly|powerful|advanced|simple)\s+){0,3}(?:pipe\s+)?(?:bomb|explosive|ied|molotov|grenade"
        r"|napalm|nerve\s+agent|bioweapon|biological\s+weapon|chemical\s+weapon|nuclear\s+weapon|dirty\s+bomb"
        r"|untraceable\s+(?:gun|firearm)|ghost\s+gun|firearm|silencer|suicide\s+vest|poison|weapon)s?\b(?!-)",
    ),
    (
        "bomb|explosiv",
        r"\b(?:detonate|plant)\s+(?:a\s+|the\s+)?(?:bomb|explosive)",
    ),
    # killing and hurting people
    (
        "kill|murder|assassin|poison|strangl|stab|shoot|tortur|kidnap|abduct|maim|injur|hurt|harm|beat|attack|drown|suffocat",
        rf"\b(?:kill|murder|assassinate|poison|strangle|stab|shoot|torture|kidnap|abduct|maim|injure|hurt|harm|beat\s+up"
        rf"|attack|drown|suffocate)\s+{_PERSON}\b",
    ),
    (
        "get away",
        r"\bget\s+away\s+with\s+(?:murder|killing|a\s+murder|a\s+crime|manslaughter|assault|rape|arson)\b",
    ),
    (
        "murder|shooting|attack|massacre|genocide|arson|kidnapping",
        r"\b(?:commit|carry\s+out|plan|execute)\s+(?:a\s+)?(?:murder|mass\s+shooting|terrorist\s+attack|terror\s+attack"
        r"|massacre|genocide|arson|kidnapping|school\s+shooting)\b",
    ),
    (
        "cause",
        r"\bcause\s+(?:physical\s+)?(?:harm|injury|injuries|death|deaths)\s+to\s+" + _PERSON,
    ),
    (
        "contaminat|poison",
        r"\b(?:contaminate|poison)\s+(?:a|the)\s+(?:public\s+)?(?:water\s+supply|food\s+supply|reservoir)\b",
    ),
    # hard drugs
    (
        "meth|cocaine|crack|heroin|fentanyl|lsd|mdma|ecstasy|drugs",
        r"\b(?:make|cook|synthesi[sz]e|manufacture|produce|grow|extract)\s+(?:\w+\s+){0,2}?(?:meth|methamphetamine"
        r"|crystal\s+meth|cocaine|crack|heroin|fentanyl|lsd|mdma|ecstasy|illegal\s+drugs)\b",
    ),
    (
        "sell|smuggl|traffic|distribut",
        r"\b(?:sell|smuggle|traffic|distribute)\s+(?:illegal\s+)?(?:drugs|cocaine|heroin|fentanyl|meth|firearms|guns"
        r"|weapons|organs)\b(?:\W+\w+){0,6}?\W+(?:without\s+getting\s+caught|undetected|illegally|across\s+the\s+border)",
    ),
    # theft, fraud, counterfeiting
    (
        "steal",
        r"\b(?:steal|stealing)\s+(?:someone'?s|a\s+person'?s|people'?s|their|credit\s+card|bank|personal|the\s+identity"
        r"|an?\s+identity|identities|money\s+from|from\s+(?:a|my|the)\s+(?:store|shop|employer|bank|charity))",
    ),
    (
        "theft|fraud|evasion|embezzl|launder|robbery|burglary",
        r"\b(?:commit|get\s+away\s+with)\s+(?:identity\s+theft|fraud|insurance\s+fraud|tax\s+fraud|tax\s+evasion"
        r"|embezzlement|money\s+laundering|a\s+robbery|robbery|burglary)\b",
    ),
    (
        "launder",
        r"\b(?:launder)\s+(?:money|cash|the\s+proceeds)\b",
    ),
    (
        "counterfeit|forge|fake",
        r"\b(?:counterfeit|forge|fake)\s+(?:money|currency|bills|banknotes|(?:a\s+)?passports?|id\s+cards?|(?:an?\s+)?ids"
        r"|(?:a\s+)?driver'?s\s+licen[cs]es?|signatures?|prescriptions?|documents)\b",
    ),
    (
        "shoplift|rob ",
        r"\bshoplift\w*|\brob\s+(?:a|the)\s+(?:bank|store|shop|house|gas\s+station|person)\b",
    ),
    (
        "phishing|scam",
        r"\b(?:phishing|scam)\s+(?:e-?mails?|messages?|websites?|sites?|pages?|calls?)\b(?:\W+\w+){0,10}?\W+(?:steal"
        r"|trick|credentials|passwords|bank|login|personal\s+information)",
    ),
    (
        "scam",
        r"\bscam\s+(?:elderly|old|vulnerable)\s+people\b|\bscam\s+(?:someone|people)\s+out\s+of\b",
    ),
    # breaking into other people's accounts and systems
    (
        "hack|break",
        r"\b(?:hack|break)\s+into\s+(?:someone'?s|somebody'?s|another\s+person'?s|my\s+(?:ex|wife|husband|partner|boss"
        r"|neighbou?r)'?s?|a\s+government|the\s+government|a\s+bank|a\s+hospital|their|his|her|people'?s)",
    ),
    (
        "unauthori",
        r"\bgain\s+unauthori[sz]ed\s+access\s+to\b",
    ),
    (
        "ransomware|keylogger|virus|botnet|trojan|worm|spyware",
        r"\b(?:create|write|develop|build|make|spread|deploy|distribute)\s+(?:a\s+|an\s+)?(?:ransomware|keylogger"
        r"|computer\s+virus|botnet|trojan|worm\s+that|spyware)\b",
    ),
    (
        "track|spy|stalk|monitor",
        r"\b(?:track|spy\s+on|stalk|monitor)\s+"
        + _PERSON
        + r"(?:'?s?(?:\s+\w+){0,3})?\s+without\s+(?:their|his|her)\s+(?:consent|knowledge|permission)",
    ),
    # malicious software made or spread (not detected, analysed or removed)
    (
        "malware|ransomware|keylogger|rootkit|trojan|botnet|spyware|virus|exploit kit|malicious",
        r"\b(?:create|write|develop|build|make|code|program|design|spread|deploy|distribute|deliver|embed|install)\s+"
        r"(?:(?:a|an|my|the|some|stealthy|undetectable|self-replicating|polymorphic)\s+){0,3}(?:\w+\s+)?(?:malware"
        r"|ransomware|keylogger|rootkit|trojan|botnet|spyware|computer\s+virus|macro\s+virus|exploit\s+kit"
        r"|malicious\s+payload)s?\b(?!\s*(?:detect|analys|analyz|scann|protect|remov|defen|classif|signature))",
    ),
    (
        "phishing|ponzi|pyramid|fake",
        r"\b(?:create|write|make|build|design|set\s+up|run|start)\s+(?:(?:a|an|my|some)\s+){0,2}(?:\w+\s+)?(?:phishing"
        r"\s+(?:websites?|sites?|pages?|e-?mails?|campaigns?|kits?)|ponzi\s+scheme|pyramid\s+scheme"
        r"|fake\s+(?:charit(?:y|ies)|identit(?:y|ies)|identification|ids?|degrees?|reviews|passports?))\b",
    ),
    # a request to get away with it: evade the police, leave no trace, without the victim's consent
    (
        "caught|detected|traced|noticed|evade|untraceable",
        r"\b(?:without\s+(?:getting|being)\s+(?:caught|detected|traced|noticed\s+by\s+(?:the\s+)?police)"
        r"|evade\s+(?:law\s+enforcement|the\s+police|police|capture|detection\s+by\s+(?:the\s+)?police)"
        r"|without\s+being\s+traced|untraceable\s+(?:poison|weapon|gun|murder))\b",
    ),
    (
        "without|unlawfully|illegally",
        r"\b(?:access|read|monitor|track|record|collect)\s+(?:\w+\s+){0,4}?(?:someone'?s?|an\s+individual'?s?|people'?s?"
        r"|others'?|private\s+individuals'?)\s+(?:\w+\s+){0,4}?(?:without\s+(?:their|his|her|them)\s+(?:knowledge"
        r"|knowing|consent|permission|approval)|without\s+authori[sz]ation|unlawfully|illegally)",
    ),
    # self-harm
    (
        "myself|my life|my own life|suicide|self-harm",
        r"\b(?:kill\s+myself|commit\s+suicide|end\s+my\s+(?:own\s+)?life|hurt\s+myself|cut\s+myself|self-harm\s+without)\b",
    ),
    # hate, harassment, extremism, abuse
    (
        "incite|promot|encourag|glorif",
        r"\b(?:incite|promote|encourage|glorify)\s+(?:\w+\s+){0,2}?(?:violence|hatred|terrorism|genocide|self-harm"
        r"|suicide|racism)\b",
    ),
    (
        "harass|bully|blackmail|extort|dox|swat",
        r"\b(?:harass|bully|cyberbully|blackmail|extort|dox|doxx|swat)\s+(?:\w+\s+)?" + _PERSON,
    ),
    (
        "recruit|radicali",
        r"\b(?:recruit|radicali[sz]e)\s+(?:\w+\s+){0,2}?(?:for|into|to\s+join)\s+(?:a\s+)?(?:terrorist|extremist|isis"
        r"|jihadist)",
    ),
    (
        "child|minors|kids",
        r"\b(?:child\s+(?:pornography|porn|sexual\s+abuse)|sexual\s+(?:content|images|acts)\s+(?:with|of|involving)"
        r"\s+(?:minors|children|a\s+child|kids))\b",
    ),
    (
        "groom|lure",
        r"\b(?:groom|lure)\s+(?:a\s+)?(?:child|children|minors?|kids?)\b",
    ),
)

_ACTS = tuple((tuple(words.split("|")), re.compile(pattern)) for words, pattern in _HARM_ACTS)
_REQUEST_RE = re.compile(_REQUEST)
_CLAUSE_END = re.compile(r"[.!?\n]")
_NEAR = 100  # characters around an act in which the request must be, within the same clause
RULE = Rule(
    name="harmful_request",
    category=CATEGORY,
    score=0.8,
    pattern=re.compile("|".join(f"(?:{pattern})" for _, pattern in _HARM_ACTS)),
    reason="asks for help with serious harm (weapons, violence, hard drugs, theft and fraud, breaking into "
    "others' accounts, self-harm, hate, abuse of children)",
    anchors=tuple(sorted({w for words, _ in _HARM_ACTS for w in words.split("|")})),
)


def find_harmful(text: str) -> RuleHit | None:
    """The first act of harm with a request in its clause ("how do I ... make a bomb"), on a normalised view.
    Each act's pattern runs only when one of its words is in the text (a substring test; most texts have
    none), and the request is looked for only in the clause around an act found."""
    for words, pattern in _ACTS:
        if not any(w in text for w in words):
            continue
        for act in pattern.finditer(text):
            lo, hi = max(0, act.start() - _NEAR), min(len(text), act.end() + _NEAR)
            before = _CLAUSE_END.split(text[lo : act.start()])[-1]
            after = _CLAUSE_END.split(text[act.end() : hi])[0]
            if _REQUEST_RE.search(before) or _REQUEST_RE.search(after) or _REQUEST_RE.match(act.group(0)):
                return RuleHit(RULE, act.start(), act.end())
    return None
