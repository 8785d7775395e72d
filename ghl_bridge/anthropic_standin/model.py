"""The stand-in's deterministic "model": an analysis of a sales call from the transcript's words alone.

Nothing here is intelligent: simple keyword rules, written down so that tests can assert on them, and the same
answer for the same request every time. The real model is evaluated against labelled transcripts
(tests/fixtures/analysis/labelled_transcripts.json, bench/eval_analysis.py); these rules need not be right.

THE PROMPT CONTRACT (what the pipeline sends in its user message; `parse_prompt` reads it):

    <call_started_at>2026-12-04T15:04:05-05:00</call_started_at>     ISO 8601 with offset (location's zone)
    <time_zone>America/New_York</time_zone>                         IANA zone name
    <transcript>
    Agent: ...          one turn a line; "Agent"/"Rep"/"Caller"/"Sales" = our side,
    Contact: ...        "Contact"/"Customer"/"Prospect"/"Client"/"Lead" (or any other label) = the contact;
    ...                 unlabelled lines are words of an unknown speaker (treated as the contact's)
    </transcript>

Missing tags: the whole user text is the transcript, the start time is the request's arrival (UTC).

THE RULES (applied to lower-cased text; "contact text" = the contact's turns, or all text when unlabelled)

disposition, the first rule that matches, in this order:
  1. Do Not Contact      contact text says "stop calling", "do not call"/"don't call|contact|email ... again|anymore",
                         "remove me/my number/us", "take me/us/my number off", "do-not-call", "never call",
                         "lose my/this number".
  2. Incorrect Number    "wrong number", "no one/nobody (here) by/named/called that name", "doesn't live|work
                         here", "no longer works here", "left the company", "not the right number", "never heard of",
                         "just got this number", "I'm not <name> and".
  3. No Answer           no words at all, only ringing, or the contact said nothing and no voicemail phrase;
                         also "mailbox is full".
     Voicemail           the contact said nothing or one greeting turn, and a voicemail phrase occurs
                         ("leave a message", "after the tone|beep", "voicemail", "not available to take your
                         call", "can't come to the phone", "leaving a message", "record your message").
  4. Gatekeeper          the contact speaks of the person sought in the third person: "he's/she's not in|
                         available|here", "(he|she) is in a meeting|out|away", "can I take a message", "I'm his/her
                         assistant", "I'll pass it/the message along|on", "not the decision maker", "you'd need to
                         speak to|with".
  5. Meeting Booked      a booking phrase ("book", "booked", "schedule(d)", "calendar invite", "send (you|over)
                         (the|an) invite", "lock it/that in", "confirmed for", "see you on|then", "demo on|for|at")
                         not negated ("don't book", "no need to schedule"), AND the contact assents at least once
                         ("yes", "yeah", "sure", "sounds good", "perfect", "works for me", "that works", "great",
                         "book me", "let's do", "ok"/"okay").
  6. Callback Requested  a callback phrase ("call me", "call back", "try me", "reach me", "ring me", "give me a
                         call|ring", "catch me", "follow up", "touch base", "circle back", or the agent's "better|
                         another|good time", "what works for you", "another day") not negated
                         ("don't|do not|no need to|never" before it), with a time expression in the same turn or
                         the next two turns (see callback_at); or "call me back" without a time.
  7. Not Interested      a hard no: "don't call me back", "no need to call back", "not interested at all",
                         "we'll pass", "never going to".
  8. Future Potential    "not right now", "maybe later", "next year|quarter", "in a few months", "down the road",
                         "send me (some) info(rmation)", "email me", "keep me in mind", "reach out again",
                         "circle back later", "not ready", "after the holidays".
  9. Not Interested      "nothing to talk about", "signed a ... contract with", "not interested", "no thanks",
                         "no thank you", "we're (all) set", "don't need",
                         "not looking", "not a fit", "not for us", "happy with (our|what)", "already (have|use)".
 10. Future Potential    anything else (a conversation without a clear outcome).

callback_at (only with disposition Callback Requested; else null), resolved against call_started_at in time_zone:
  day    "today"/"tonight"/"this morning|afternoon|evening"/"later today" (not "not today") = the call's day,
         checked after every other day word; "tomorrow" = +1;
         "day after tomorrow" = +2; "<weekday>"/"this|on|coming <weekday>" = its next occurrence after the call's
         day; "next <weekday>" = that weekday in the following Monday-based week; "next week" = next week's
         Monday; "end of the week"/"later this week" = the next Friday after the call's day; "in N days|weeks"
         ("a"/"a couple of"/"a few" = 1/2/3); "next month" = the first weekday of next month; "<month> <day>(th)"
         = that date (next year when past); "the <N>th" = that day of this month, else of the next;
         "in (about) N hours|minutes" / "in an hour" / "in half an hour" = start + that.
  time   "3", "3:30", "3pm", "3:30 p.m.", "three", "three thirty", "half past two", "quarter past|to four",
         "noon"/"midday"/"lunch(time)" = 12:00, "first thing" = 08:00, "end of (the) day"/"close of business" =
         17:00, "morning" = 09:00, "afternoon" = 14:00, "evening" = 18:00, "tonight" = 19:00. A bare number is a
         time only after at|around|about|after|before|by|say|until|till or with :MM/am/pm/o'clock. Without am/pm:
         "morning" says am, "afternoon|evening|tonight" says pm, else 1-7 = pm, 8-11 = am, 12 = noon. "after H" =
         H:00, "before H" = H:00 minus one hour.
  both   day without time = 09:00; time without day = today when still ahead of the call, else tomorrow; a time
         today that has passed = the next full hour after the call. Seconds are 0; the answer is ISO 8601 with the
         zone's offset of that day.

sentiment      positive/negative word counts over contact text (see POSITIVE_WORDS / NEGATIVE_WORDS, negated
               positives count as negative); ties: positive for Meeting Booked/Callback Requested, negative for
               Do Not Contact/Not Interested, else neutral.
interest_level BASE_INTEREST[disposition] + one per buying signal, at most 10.
key_points     3-5 strings: the outcome, the callback time when there is one, the contact's first substantial
               sentence, objections and buying signals counted (padded to 3 with what is known).
action_items   one per disposition (ACTIONS), plus "Answer: <question>" for a contact's question (at most 2).
objections     the contact's sentences with an objection word (OBJECTION_WORDS), at most 5, at most 160 chars.
buying_signals the contact's sentences with a buying-signal phrase (BUYING_SIGNALS), not negated, at most 5.
engagement_assessment, conversation_quality, summary: one sentence each from the turn and word counts, the
               disposition and the callback time (summary: two or three sentences).

A known field is filled by name in any object of the schema (top level or nested); any other property of the
schema, or a known one whose value does not fit its subschema, is filled by type
(`fill`): enum/const -> its first value; string -> "" (date-time/date/time formats: the call's start);
integer/number -> 0; boolean -> false; array -> []; null -> null; object -> every property.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DISPOSITIONS = ["No Answer", "Voicemail", "Gatekeeper", "Incorrect Number", "Not Interested",
                "Callback Requested", "Future Potential", "Meeting Booked", "Do Not Contact"]

AGENT_LABELS = {"agent", "rep", "caller", "sales", "salesperson", "sdr", "bdr", "ae", "user", "me", "us"}
TAG = r"<{name}>\s*(.*?)\s*</{name}>"
LABELLED_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 ._'-]{0,30}?)\s*:\s*(.*)$")

WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
MINUTE_WORDS = {"fifteen": 15, "thirty": 30, "forty-five": 45, "forty five": 45, "o'clock": 0, "oh five": 5,
                "ten": 10, "twenty": 20, "forty": 40, "fifty": 50}
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "a couple of": 2, "a couple": 2, "couple of": 2, "two": 2,
               "a few": 3, "few": 3, "three": 3, "four": 4, "five": 5, "six": 6}

POSITIVE_WORDS = ["great", "interested", "sounds good", "perfect", "love", "excited", "definitely", "awesome",
                  "helpful", "makes sense", "appreciate", "happy to", "glad", "works for me", "yes", "sure"]
NEGATIVE_WORDS = ["not interested", "annoyed", "frustrat", "stop calling", "waste", "busy", "too expensive",
                  "no thanks", "no thank you", "don't need", "angry", "ridiculous", "remove me", "wrong number",
                  "not a fit", "unhappy", "terrible"]
OBJECTION_WORDS = ["expensive", "price", "cost", "budget", "already have", "already use", "contract",
                   "not interested", "no time", "busy", "not a priority", "happy with", "don't need", "too small",
                   "locked in", "not sure", "concern", "worried"]
BUYING_SIGNALS = ["how much", "pricing", "price", "demo", "sounds good", "interested", "send me", "when can",
                  "trial", "how does", "what would it take", "how long", "integrate", "next steps", "proposal",
                  "quote", "book"]
BASE_INTEREST = {"No Answer": 0, "Voicemail": 0, "Incorrect Number": 0, "Do Not Contact": 0, "Gatekeeper": 2,
                 "Not Interested": 1, "Future Potential": 4, "Callback Requested": 6, "Meeting Booked": 8}
ACTIONS = {
    "No Answer": "Try the number again at a different time of day.",
    "Voicemail": "Try again later; a voicemail was reached.",
    "Gatekeeper": "Ask for the decision maker's direct line or a better time to reach them.",
    "Incorrect Number": "Find the contact's correct phone number before calling again.",
    "Not Interested": "Close the opportunity or revisit in six months.",
    "Callback Requested": "Call the contact back at the requested time.",
    "Future Potential": "Send the requested information and follow up later.",
    "Meeting Booked": "Send the calendar invite and prepare for the meeting.",
    "Do Not Contact": "Add the number to the do-not-contact list and stop all outreach.",
}

DNC = re.compile(r"stop calling|do not call|don'?t (ever )?(call|contact|email|text) (me|us|this number|here)( \w+)?"
                 r"( by phone or email)? (again|anymore|any more)|do not (contact|email|text) (me|us)"
                 r"|remove (me|my number|us|this number)|take (me|us|my number|this number) off|do-not-call"
                 r"|never call|lose (my|this|our) number|put me on your do not")
WRONG_NUMBER = re.compile(r"wrong number|(no one|nobody|no-one)( here)? (by|named|called|with) that name"
                          r"|(doesn'?t|does not) (live|work) here|no longer works? here|not the right number"
                          r"|never heard of|there'?s no \w+ here|left the company|(doesn'?t|does not) work here anymore"
                          r"|just got this number|i'?m not \w+ and|this is(n'?t| not) \w+'?s (phone|number)")
VOICEMAIL = re.compile(r"leave (a|your) (message|name)|after the (tone|beep)|at the (tone|beep)|voicemail|voice mail"
                       r"|not available to take your call|can'?t come to the phone|leaving (you )?a message"
                       r"|record your message|unable to take your call")
MAILBOX_FULL = re.compile(r"mailbox is full|not set up|has not been set up")
GATEKEEPER = re.compile(r"(he|she)('s| is) (not (in|available|here|around)|in a meeting|out( of| for|$| today)|away|on "
                        r"(another|the other) (call|line)|unavailable|with a client)|can i take a message"
                        r"|i'?m (his|her|the owner'?s) (assistant|secretary)|(pass|give) (it|the message|that|your "
                        r"message) (along|on)|not the decision maker|you'?d (need|have) to (speak|talk) (to|with)"
                        r"|(he|she) handles (that|all)|let (him|her) know you called")
BOOKING = re.compile(r"\bbook(ed|ing)?\b|\bschedul(e|ed|ing)\b|calendar invite|send (you |over )?(the|an|a) "
                     r"(calendar )?invite|lock (it|that) in|confirmed for|see you (on|then|monday|tuesday|wednesday|"
                     r"thursday|friday|next)|\bdemo (on|for|at)\b|\bset (it|that|a meeting|a demo|up a) ")
BOOKING_NEGATED = re.compile(r"(don'?t|do not|no need to|not|won'?t|never) (\w+ ){0,2}(book|schedul)")
ASSENT = re.compile(r"\b(yes|yeah|yep|sure|sounds good|perfect|works for me|that works|great|book me|let'?s do"
                    r"|ok|okay|absolutely|definitely)\b")
CALLBACK = re.compile(r"(better|another|good|best) time|what works for you|another day|when would be better"
                      r"|call (me|us|him|her) (back|again|on|at|in|tomorrow|next|later|after|around|this|monday|tuesday"
                      r"|wednesday|thursday|friday)|call (me|us)\b|call back|callback|call you back|try (me|us|again|back)"
                      r"|reach (me|us)|ring (me|us)|give (me|us) a (call|ring|buzz)( back)?|catch (me|us)|follow up"
                      r"|touch base|circle back")
CALLBACK_NEGATED = re.compile(r"(don'?t|do not|no need to|never|not|stop|please don'?t) (\w+ ){0,2}"
                              r"(call|try|reach|ring|follow|circle|bother)")
HARD_NO = re.compile(r"don'?t call (me )?back|do not call (me )?back|no need to call( me)? back|not interested at all"
                     r"|we'?ll pass|never going to|don'?t bother calling")
FUTURE = re.compile(r"not right now|maybe later|next year|next quarter|in a few months|couple (of )?months"
                    r"|down the road|send me (some |more )?info|email me|keep me in mind|reach out again"
                    r"|circle back later|not ready|after the holidays|later in the year|not at the moment"
                    r"|not this (year|quarter)|in the (spring|summer|fall|new year)")
SOFT_NO = re.compile(r"nothing to talk about|signed (a|an) [\w -]*(contract|deal|agreement) with|not interested"
                     r"|no thanks|no thank you|we'?re (all )?set|don'?t need|not looking|not a fit"
                     r"|not for us|happy with (our|what)|already (have|use|got)")


# ---- the prompt -------------------------------------------------------------------------------------------------

@dataclass
class CallPrompt:
    transcript: str
    started_at: datetime  # aware, in `zone`
    zone: ZoneInfo | timezone


def parse_prompt(text: str, *, now: datetime | None = None) -> CallPrompt:
    """The three delimited parts of the prompt contract (see the module docstring)."""
    def tag(name: str) -> str | None:
        found = re.search(TAG.format(name=name), text, re.S)
        return found.group(1) if found else None

    zone: ZoneInfo | timezone = timezone.utc
    zone_name = tag("time_zone")
    if zone_name:
        try:
            zone = ZoneInfo(zone_name.strip())
        except (ZoneInfoNotFoundError, ValueError):
            zone = timezone.utc
    started = None
    raw_start = tag("call_started_at")
    if raw_start:
        try:
            started = datetime.fromisoformat(raw_start.strip().replace("Z", "+00:00"))
        except ValueError:
            started = None
    if started is None or started.tzinfo is None:
        started = (now or datetime.now(timezone.utc)) if started is None else started.replace(tzinfo=zone)
    transcript = tag("transcript")
    return CallPrompt(transcript=text if transcript is None else transcript, started_at=started.astimezone(zone),
                      zone=zone)


@dataclass
class Turn:
    speaker: str  # "agent", "contact" or "unknown"
    text: str


def turns_of(transcript: str) -> list[Turn]:
    turns = []
    for line in transcript.splitlines():
        if not line.strip():
            continue
        labelled = LABELLED_LINE.match(line)
        if labelled and labelled.group(1).strip().lower() not in {"http", "https"}:
            label = labelled.group(1).strip().lower()
            speaker = "agent" if label in AGENT_LABELS or label.startswith(("agent", "rep ", "sales")) else "contact"
            turns.append(Turn(speaker, labelled.group(2).strip()))
        else:
            turns.append(Turn("unknown", line.strip()))
    return turns


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


# ---- the analysis ------------------------------------------------------------------------------------------------

@dataclass
class Analysis:
    disposition: str
    callback_at: str | None
    sentiment: str
    interest_level: int
    key_points: list[str]
    action_items: list[str]
    objections: list[str]
    buying_signals: list[str]
    engagement_assessment: str
    conversation_quality: str
    summary: str
    extras: dict[str, Any] = field(default_factory=dict)

    def known(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in (
            "disposition", "callback_at", "sentiment", "interest_level", "key_points", "action_items",
            "objections", "buying_signals", "engagement_assessment", "conversation_quality", "summary")}
        return {**values, **self.extras}


def analyse(prompt: CallPrompt) -> Analysis:
    turns = turns_of(prompt.transcript)
    contact_turns = [t for t in turns if t.speaker in {"contact", "unknown"}]
    labelled = any(t.speaker != "unknown" for t in turns)
    all_text = " ".join(t.text for t in turns).lower()
    contact_text = " ".join(t.text for t in contact_turns).lower() if labelled else all_text
    callback_at = _callback_time(turns, prompt)
    disposition = _disposition(turns, contact_turns, all_text, contact_text, callback_at is not None)
    if disposition != "Callback Requested":
        callback_at = None
    contact_sentences = [s for t in contact_turns for s in sentences(t.text)]
    objections = _matching(contact_sentences, OBJECTION_WORDS)
    signals = [s for s in _matching(contact_sentences, BUYING_SIGNALS)
               if not re.search(r"\bnot (interested|looking)|no (interest|thanks)", s.lower())]
    sentiment = _sentiment(contact_text, disposition)
    interest = min(10, BASE_INTEREST[disposition] + len(signals))
    callback_words = f" for {callback_at}" if callback_at else ""
    words = len(prompt.transcript.split())
    first = next((s for s in contact_sentences if len(s.split()) >= 4), None)
    key_points = [f"Outcome: {disposition}{callback_words}."]
    if first:
        key_points.append(f'The contact said: "{_clip(first, 140)}"')
    key_points.append(f"{len(objections)} objection(s) and {len(signals)} buying signal(s) were heard.")
    if callback_at:
        key_points.append(f"The contact asked to be called back at {callback_at}.")
    key_points.append(f"Contact sentiment was {sentiment}; interest {interest}/10.")
    key_points = key_points[:5]
    questions = [s for s in contact_sentences if s.endswith("?") and not CALLBACK.search(s.lower())][:2]
    action_items = [ACTIONS[disposition] + (f" ({callback_at})" if callback_at else "")]
    action_items += [f"Answer: {_clip(q, 140)}" for q in questions]
    contact_turn_count = sum(1 for t in turns if t.speaker == "contact") if labelled else len(turns)
    engagement = ("high" if contact_turn_count >= 5 else "moderate" if contact_turn_count >= 2 else "low")
    quality = ("substantive two-way conversation" if contact_turn_count >= 4 and len(turns) >= 8 else
               "short exchange" if contact_turn_count >= 1 else "no conversation")
    summary = (f"A {words}-word call in {len(turns)} turn(s); the contact spoke in {contact_turn_count}. "
               f"The outcome was {disposition}.")
    if callback_at:
        summary += f" The contact asked for a call back at {callback_at}."
    return Analysis(
        disposition=disposition, callback_at=callback_at, sentiment=sentiment, interest_level=interest,
        key_points=key_points, action_items=action_items, objections=objections, buying_signals=signals,
        engagement_assessment=f"{engagement.capitalize()} engagement: the contact spoke in {contact_turn_count} of "
                              f"{len(turns)} turns.",
        conversation_quality=f"{quality.capitalize()} ({words} words).", summary=summary)


def _disposition(turns: list[Turn], contact_turns: list[Turn], all_text: str, contact_text: str,
                 has_callback_time: bool) -> str:
    if DNC.search(contact_text):
        return "Do Not Contact"
    if WRONG_NUMBER.search(contact_text):
        return "Incorrect Number"
    spoken = [t for t in contact_turns if re.search(r"[a-z]", t.text.lower())
              and not re.fullmatch(r"[\W]*(\(?ring(ing)?\)?|\[?ring(ing)?\]?|beep)[\W]*", t.text.lower())]
    if not all_text.strip() or MAILBOX_FULL.search(all_text) and len(spoken) <= 1:
        return "No Answer"
    if len(spoken) <= 1 and VOICEMAIL.search(all_text):
        return "Voicemail"
    if not spoken:
        return "No Answer"
    if GATEKEEPER.search(contact_text):
        return "Gatekeeper"
    booked = any(BOOKING.search(s.lower()) and not BOOKING_NEGATED.search(s.lower())
                 for t in turns for s in sentences(t.text))
    if booked and ASSENT.search(contact_text):
        return "Meeting Booked"
    if has_callback_time or re.search(r"call (me|us) back", contact_text) and not CALLBACK_NEGATED.search(contact_text):
        if not HARD_NO.search(contact_text):
            return "Callback Requested"
    if HARD_NO.search(contact_text):
        return "Not Interested"
    if FUTURE.search(contact_text):
        return "Future Potential"
    if SOFT_NO.search(contact_text):
        return "Not Interested"
    return "Future Potential"


def _sentiment(contact_text: str, disposition: str) -> str:
    negative = sum(contact_text.count(w) for w in NEGATIVE_WORDS)
    positive = sum(len(re.findall(rf"(?<!not )\b{re.escape(w)}", contact_text)) for w in POSITIVE_WORDS)
    positive -= contact_text.count("not interested")  # "interested" inside it is not a positive word
    if positive > negative:
        return "positive"
    if negative > positive:
        return "negative"
    if disposition in {"Meeting Booked", "Callback Requested"}:
        return "positive"
    if disposition in {"Do Not Contact", "Not Interested"}:
        return "negative"
    return "neutral"


def _matching(items: list[str], words: list[str]) -> list[str]:
    found = []
    for item in items:
        if any(w in item.lower() for w in words) and _clip(item, 160) not in found:
            found.append(_clip(item, 160))
    return found[:5]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---- callback times ------------------------------------------------------------------------------------------------

def _callback_time(turns: list[Turn], prompt: CallPrompt) -> str | None:
    """The first callback phrase (not negated) with a time expression in its turn or the next two turns."""
    for index, turn in enumerate(turns):
        lowered = turn.text.lower()
        if not CALLBACK.search(lowered) or all(CALLBACK_NEGATED.search(s.lower()) for s in sentences(lowered)
                                               if CALLBACK.search(s.lower())):
            continue
        for candidate in turns[index:index + 3]:
            resolved = resolve_time(candidate.text, prompt.started_at)
            if resolved is not None:
                return resolved.isoformat()
    return None


_HOUR = r"(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_MIN_WORD = r"(fifteen|thirty|forty[- ]five|twenty|forty|fifty|ten|oh five)"
_AMPM = r"(a\.?\s?m\.?|p\.?\s?m\.?)"
_PREP = r"(at|around|about|after|before|by|say|until|till|from|like|maybe)"
TIME_PATTERNS = [
    ("half_past", re.compile(rf"\bhalf past {_HOUR}\b")),
    ("quarter_past", re.compile(rf"\bquarter past {_HOUR}\b")),
    ("quarter_to", re.compile(rf"\bquarter (to|till|of) {_HOUR}\b")),
    ("clock", re.compile(rf"(?:\b{_PREP}\s+)?\b(\d{{1,2}}):(\d{{2}})\s*{_AMPM}?")),
    ("ampm", re.compile(rf"(?:\b{_PREP}\s+)?\b{_HOUR}(?:\s+{_MIN_WORD})?\s*({_AMPM}|o'?clock)")),
    ("prep", re.compile(rf"\b{_PREP}\s+{_HOUR}(?:\s+{_MIN_WORD})?\b(?!\s*(days?|weeks?|months?|years?|minutes?|hours?"
                        rf"|people|users|seats|locations|percent|%|dollars|bucks|k\b|grand|thousand|hundred))")),
]
PARTS_OF_DAY = [(re.compile(r"first thing"), time(8, 0)),
                (re.compile(r"\b(noon|midday|lunch ?time|lunch)\b"), time(12, 0)),
                (re.compile(r"end of (the )?day|close of business|\bcob\b|end of business"), time(17, 0)),
                (re.compile(r"\bmorning\b"), time(9, 0)), (re.compile(r"\bafternoon\b"), time(14, 0)),
                (re.compile(r"\bevening\b"), time(18, 0)), (re.compile(r"\btonight\b"), time(19, 0))]


def _number(word: str) -> int:
    return int(word) if word.isdigit() else WORD_NUMBERS[word]


def _minutes(word: str | None) -> int:
    if not word:
        return 0
    return MINUTE_WORDS.get(word.replace("-", " ").replace("forty five", "forty-five"), MINUTE_WORDS.get(word, 0))


def _clock(hour: int, minute: int, ampm: str | None, text: str, prep: str | None) -> time | None:
    if not 0 <= minute < 60 or not 0 <= hour <= 23:
        return None
    if ampm and ampm.startswith("p") and hour < 12:
        hour += 12
    elif ampm and ampm.startswith("a") and hour == 12:
        hour = 0
    elif not ampm and hour <= 12:
        if re.search(r"\b(afternoon|evening|tonight)\b", text) and hour < 12:
            hour += 12
        elif re.search(r"\bmorning\b", text):
            pass
        elif 1 <= hour <= 7:
            hour += 12
    if prep == "before":
        hour = max(0, hour - 1)
    return time(hour % 24, minute)


def _time_of_day(text: str) -> time | None:
    for kind, pattern in TIME_PATTERNS:
        found = pattern.search(text)
        if not found:
            continue
        if kind == "half_past":
            return _clock(_number(found.group(1)), 30, None, text, None)
        if kind == "quarter_past":
            return _clock(_number(found.group(1)), 15, None, text, None)
        if kind == "quarter_to":
            return _clock(_number(found.group(2)) - 1, 45, None, text, None)
        if kind == "clock":
            return _clock(int(found.group(2)), int(found.group(3)), found.group(4), text, found.group(1))
        if kind == "ampm":
            suffix = found.group(4)
            ampm = None if "clock" in suffix else suffix.replace(".", "").replace(" ", "")
            return _clock(_number(found.group(2)), _minutes(found.group(3)), ampm, text, found.group(1))
        if kind == "prep":
            return _clock(_number(found.group(2)), _minutes(found.group(3)), None, text, found.group(1))
    for pattern, moment in PARTS_OF_DAY:
        if pattern.search(text):
            return moment
    return None


def _next_weekday(day: date, weekday: int) -> date:
    return day + timedelta(days=(weekday - day.weekday() - 1) % 7 + 1)


def _day(text: str, today: date) -> date | None:
    if re.search(r"day after tomorrow", text):
        return today + timedelta(days=2)
    if re.search(r"\btomorrow\b", text):
        return today + timedelta(days=1)
    for index, name in enumerate(WEEKDAYS):
        found = re.search(rf"\b(next\s+)?{name}\b", text)
        if found:
            if found.group(1):
                next_monday = today + timedelta(days=7 - today.weekday())
                return next_monday + timedelta(days=index)
            return _next_weekday(today, index)
    if re.search(r"\bnext week\b", text):
        return today + timedelta(days=7 - today.weekday())
    if re.search(r"end of (the|this) week|later this week|by friday", text):
        return _next_weekday(today, 4)
    counted = re.search(r"\bin (a couple of|a couple|couple of|a few|few|an?|one|two|three|four|five|six|\d+) "
                        r"(days?|weeks?)\b", text)
    if counted:
        count = int(counted.group(1)) if counted.group(1).isdigit() else COUNT_WORDS[counted.group(1)]
        return today + timedelta(days=count * (7 if counted.group(2).startswith("week") else 1))
    if re.search(r"\bnext month\b", text):
        first = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
        while first.weekday() >= 5:
            first += timedelta(days=1)
        return first
    of_month = re.search(r"\bthe (\d{1,2})(st|nd|rd|th)\b", text)
    if of_month and not re.search(rf"\b({'|'.join(MONTHS)})\b", text):
        day_number, candidate = int(of_month.group(1)), None
        for months_ahead in (0, 1, 2):
            first = (today.replace(day=1) + timedelta(days=32 * months_ahead)).replace(day=1)
            try:
                candidate = first.replace(day=day_number)
            except ValueError:
                continue
            if candidate > today:
                return candidate
    if re.search(r"(?<!not )\b(today|tonight|this (morning|afternoon|evening)|later today|later on)\b", text):
        return today
    dated = re.search(rf"\b({'|'.join(MONTHS)})\s+(\d{{1,2}})(st|nd|rd|th)?\b", text)
    if dated:
        month, day_number = MONTHS.index(dated.group(1)) + 1, int(dated.group(2))
        try:
            candidate = date(today.year, month, day_number)
            return candidate if candidate > today else date(today.year + 1, month, day_number)
        except ValueError:
            return None
    return None


def resolve_time(text: str, started_at: datetime) -> datetime | None:
    """The moment a phrase names, against the call's start (aware, in the location's zone); None without one."""
    lowered = text.lower().replace("’", "'")
    zone = started_at.tzinfo
    relative = re.search(r"\bin (?:about |around |roughly |like )?(an|one|a|\d+|half an) (hour|hours|minutes?|mins?)\b",
                         lowered)
    if relative and not re.search(r"\bin (a|an|one|\d+) (days?|weeks?)", lowered):
        amount = {"an": 1, "one": 1, "a": 1}.get(relative.group(1))
        if relative.group(1) == "half an":
            delta = timedelta(minutes=30)
        else:
            amount = amount or int(relative.group(1))
            delta = timedelta(hours=amount) if relative.group(2).startswith("hour") else timedelta(minutes=amount)
        return (started_at + delta).replace(second=0, microsecond=0)
    today = started_at.date()
    day = _day(lowered, today)
    moment = _time_of_day(lowered)
    if day is None and moment is None:
        return None
    if day is None:
        candidate = _localise(today, moment, zone)
        return candidate if candidate > started_at else _localise(today + timedelta(days=1), moment, zone)
    candidate = _localise(day, moment or time(9, 0), zone)
    if day == today and candidate <= started_at:
        next_hour = started_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return next_hour
    return candidate


def _localise(day: date, moment: time, zone) -> datetime:
    return datetime.combine(day, moment).replace(tzinfo=zone)


# ---- the answer, shaped by the request's schema ---------------------------------------------------------------------

def fill(schema: dict, known: dict[str, Any], *, started_at: datetime, root: dict | None = None,
         name: str | None = None, depth: int = 0) -> Any:
    """A value for `schema`: the known value of a property when it fits its subschema, else one by type."""
    from jsonschema import Draft202012Validator

    root = root if root is not None else schema
    if depth > 20:
        return None
    if "$ref" in schema:
        return fill(_resolve(root, schema["$ref"]), known, started_at=started_at, root=root, name=name,
                    depth=depth + 1)
    if name is not None and name in known:
        value = known[name]
        checked = {**schema, "$defs": root.get("$defs", {})} if "$defs" in root else schema
        if Draft202012Validator(checked).is_valid(value):
            return value
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf"):
        if schema.get(combinator):
            options = schema[combinator]
            chosen = next((o for o in options if _types(o, root) - {"null"}), options[0])
            return fill(chosen, known, started_at=started_at, root=root, depth=depth + 1)
    if schema.get("allOf"):
        merged: dict = {}
        for part in schema["allOf"]:
            merged.update(_resolve(root, part["$ref"]) if "$ref" in part else part)
        return fill(merged, known, started_at=started_at, root=root, depth=depth + 1)
    kinds = _types(schema, root)
    kind = next((k for k in ("object", "array", "string", "integer", "number", "boolean") if k in kinds), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: fill(sub, known, started_at=started_at, root=root, name=key, depth=depth + 1)
                for key, sub in properties.items()}
    if kind == "array":
        count = max(0, int(schema.get("minItems", 0) or 0))
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [fill(items, {}, started_at=started_at, root=root, depth=depth + 1) for _ in range(count)]
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return started_at.replace(microsecond=0).isoformat()
        if fmt == "date":
            return started_at.date().isoformat()
        if fmt == "time":
            return started_at.timetz().replace(microsecond=0).isoformat()
        return "x" * int(schema.get("minLength", 0) or 0)
    if kind in {"integer", "number"}:
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (1 if "exclusiveMinimum" in schema else 0))
        value = max(0, math.ceil(low)) if kind == "integer" else max(0, low)
        return value
    if kind == "boolean":
        return False
    return None


def _types(schema: dict, root: dict) -> set[str]:
    if "$ref" in schema:
        return _types(_resolve(root, schema["$ref"]), root)
    declared = schema.get("type")
    if isinstance(declared, list):
        return set(declared)
    if isinstance(declared, str):
        return {declared}
    if "properties" in schema:
        return {"object"}
    if "enum" in schema or "const" in schema:
        return {"enum"}
    return set()


def _resolve(root: dict, ref: str) -> dict:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}
