"""The templates shipped with bibliodesk, in Italian and English, one per built-in event."""

from __future__ import annotations

from .templates import Template

_SIGN_IT = "\n\nCordiali saluti,\n{{ library_name }}\n"
_SIGN_EN = "\n\nKind regards,\n{{ library_name }}\n"
_NOTE = "{% if message %}\n\n{{ message }}{% endif %}"

_WHERE_IT = "{% if pickup_branch %} presso {{ pickup_branch }}{% endif %}"
_WHERE_EN = "{% if pickup_branch %} at {{ pickup_branch }}{% endif %}"
_KEEP_IT = (
    "{% if pickup_deadline %}Potete ritirarlo entro il {{ pickup_deadline }}."
    "{% elif pickup_period_days %}Lo terremo da parte per {{ pickup_period_days }} giorni."
    "{% endif %}"
)
_KEEP_EN = (
    "{% if pickup_deadline %}Please collect it by {{ pickup_deadline }}."
    "{% elif pickup_period_days %}We will keep it for you for {{ pickup_period_days }} days."
    "{% endif %}"
)
_DOC = "«{{ title }}»{% if author %} di {{ author }}{% endif %}"
_DOC_EN = '"{{ title }}"{% if author %} by {{ author }}{% endif %}'
_DOC_OPT_IT = "{% if title %} per «{{ title }}»{% endif %}"
_DOC_OPT_EN = '{% if title %} for "{{ title }}"{% endif %}'

# (event_key, language) -> (subject, body_text, description)
SHIPPED: dict[tuple[str, str], tuple[str, str, str]] = {
    ("credentials", "it"): (
        "{{ library_name }}: le tue credenziali provvisorie",
        "Gentile {{ patron_name }},\n\necco le credenziali provvisorie per il primo accesso da casa:\n\n"
        "  Nome utente: {{ username }}\n  Password provvisoria: {{ password }}\n\n"
        "Al primo accesso ti chiederemo di sceglierne di nuove."
        "{% if expires_on %} La password provvisoria vale fino al {{ expires_on }}.{% endif %}"
        "{% if login_url %}\nAccedi qui: {{ login_url }}{% endif %}" + _NOTE + _SIGN_IT,
        "Credenziali provvisorie (P5/P7)",
    ),
    ("credentials", "en"): (
        "{{ library_name }}: your temporary credentials",
        "Dear {{ patron_name }},\n\nhere are your temporary credentials for your first log-in from home:\n\n"
        "  Username: {{ username }}\n  Temporary password: {{ password }}\n\n"
        "You will be asked to choose your own at the first log-in."
        "{% if expires_on %} The temporary password works until {{ expires_on }}.{% endif %}"
        "{% if login_url %}\nLog in here: {{ login_url }}{% endif %}" + _NOTE + _SIGN_EN,
        "Temporary credentials (P5/P7)",
    ),
    ("request_notice", "it"): (
        "{{ library_name }}: la tua richiesta di prenotazione" + _DOC_OPT_IT,
        "Gentile {{ patron_name }},\n\nti scriviamo a proposito della tua richiesta di prenotazione"
        + _DOC_OPT_IT
        + "{% if request_date %} del {{ request_date }}{% endif %}."
        + _NOTE
        + _SIGN_IT,
        "Avviso sulla richiesta web (R7)",
    ),
    ("request_notice", "en"): (
        "{{ library_name }}: your reservation request" + _DOC_OPT_EN,
        "Dear {{ patron_name }},\n\nwe are writing about your reservation request"
        + _DOC_OPT_EN
        + "{% if request_date %} of {{ request_date }}{% endif %}."
        + _NOTE
        + _SIGN_EN,
        "Notice about a web request (R7)",
    ),
    ("request_cut", "it"): (
        "{{ library_name }}: richiesta non accolta" + _DOC_OPT_IT,
        "Gentile {{ patron_name }},\n\npurtroppo non possiamo accogliere la tua richiesta di prenotazione"
        + _DOC_OPT_IT
        + "{% if request_date %} del {{ request_date }}{% endif %}."
        "{% if reason %}\nMotivo: {{ reason }}{% endif %}" + _NOTE + _SIGN_IT,
        "Richiesta web respinta (R6)",
    ),
    ("request_cut", "en"): (
        "{{ library_name }}: request declined" + _DOC_OPT_EN,
        "Dear {{ patron_name }},\n\nunfortunately we cannot accept your reservation request"
        + _DOC_OPT_EN
        + "{% if request_date %} of {{ request_date }}{% endif %}."
        "{% if reason %}\nReason: {{ reason }}{% endif %}" + _NOTE + _SIGN_EN,
        "Web request declined (R6)",
    ),
    ("reservation_ready", "it"): (
        "{{ library_name }}: «{{ title }}» è già disponibile",
        "Gentile {{ patron_name }},\n\nil documento che hai prenotato, " + _DOC + ", è già disponibile"
        " e ti aspetta" + _WHERE_IT + ".\n" + _KEEP_IT + _NOTE + _SIGN_IT,
        "Prenotazione pronta per il ritiro (V1)",
    ),
    ("reservation_ready", "en"): (
        '{{ library_name }}: "{{ title }}" is ready for pickup',
        "Dear {{ patron_name }},\n\nthe item you reserved, "
        + _DOC_EN
        + ", is ready for you"
        + _WHERE_EN
        + ".\n"
        + _KEEP_EN
        + _NOTE
        + _SIGN_EN,
        "Reservation ready for pickup (V1)",
    ),
    ("item_back_from_loan", "it"): (
        "{{ library_name }}: «{{ title }}» è rientrato ed è già disponibile",
        "Gentile {{ patron_name }},\n\nil documento che hai prenotato, " + _DOC + ", è rientrato dal"
        " prestito ed è già disponibile" + _WHERE_IT + ".\n" + _KEEP_IT + _NOTE + _SIGN_IT,
        "Documento rientrato dal prestito (V4)",
    ),
    ("item_back_from_loan", "en"): (
        '{{ library_name }}: "{{ title }}" is back and ready for pickup',
        "Dear {{ patron_name }},\n\nthe item you reserved, " + _DOC_EN + ", has been returned and is"
        " ready for you" + _WHERE_EN + ".\n" + _KEEP_EN + _NOTE + _SIGN_EN,
        "Item back from loan (V4)",
    ),
    ("pickup_reminder", "it"): (
        "{{ library_name }}: promemoria, ritira «{{ title }}» entro il {{ pickup_deadline }}",
        "Gentile {{ patron_name }},\n\nti ricordiamo che "
        + _DOC
        + " ti aspetta"
        + _WHERE_IT
        + " fino al {{ pickup_deadline }}. Dopo quella data la prenotazione scade."
        + _NOTE
        + _SIGN_IT,
        "Promemoria scadenza ritiro",
    ),
    ("pickup_reminder", "en"): (
        '{{ library_name }}: reminder, collect "{{ title }}" by {{ pickup_deadline }}',
        "Dear {{ patron_name }},\n\na reminder that "
        + _DOC_EN
        + " is waiting for you"
        + _WHERE_EN
        + " until {{ pickup_deadline }}. After that date the reservation expires."
        + _NOTE
        + _SIGN_EN,
        "Pickup deadline reminder",
    ),
    ("reservation_expired", "it"): (
        "{{ library_name }}: prenotazione scaduta per «{{ title }}»",
        "Gentile {{ patron_name }},\n\nla tua prenotazione di " + _DOC + " è scaduta"
        "{% if expired_on %} il {{ expired_on }}{% endif %} perché il documento non è stato ritirato."
        " Se ti interessa ancora, puoi prenotarlo di nuovo." + _NOTE + _SIGN_IT,
        "Prenotazione scaduta (V2)",
    ),
    ("reservation_expired", "en"): (
        '{{ library_name }}: reservation expired for "{{ title }}"',
        "Dear {{ patron_name }},\n\nyour reservation of " + _DOC_EN + " expired"
        "{% if expired_on %} on {{ expired_on }}{% endif %} because it was not collected."
        " If you still want it, you can reserve it again." + _NOTE + _SIGN_EN,
        "Reservation expired (V2)",
    ),
    ("free_message", "it"): (
        "Comunicazione da {{ library_name }}",
        "Gentile {{ patron_name }},\n\n{{ message }}" + _SIGN_IT,
        "Messaggio libero dell'operatore (N1)",
    ),
    ("free_message", "en"): (
        "A message from {{ library_name }}",
        "Dear {{ patron_name }},\n\n{{ message }}" + _SIGN_EN,
        "Operator's own message (N1)",
    ),
}


def shipped_template(event_key: str, language: str) -> Template | None:
    found = SHIPPED.get((event_key, language))
    if found is None:
        return None
    subject, body, description = found
    return Template(event_key, language, subject, body, "", description, built_in=True)


def all_shipped() -> list[Template]:
    out = []
    for key, language in SHIPPED:
        template = shipped_template(key, language)
        assert template is not None
        out.append(template)
    return out
