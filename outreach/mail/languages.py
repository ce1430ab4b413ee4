"""The words of inbound mail, a table per language: subject prefixes, auto-reply wording, return-date
cues and opt-out requests. Pure data: the modules that read mail compile it (`subjects`,
`inbound_auto`, `inbound_reply`). Adding a language is adding a `Language`.

Rows are regular expressions, matched without regard to case. In a language written with spaces
between words (`spaced`), a row matches whole words only; in Japanese, Chinese and Korean it
matches anywhere. Subject prefixes are literal text.

Return-date rows hold `{date}` where the date stands, before or after the cue ("back on {date}",
"{date}まで"), or between two parts of it ("ab dem {date} wieder"). What the date means depends on
the field the row is in:

- `back`: the day the writer is back ("back on Monday", "ab dem 21.12. wieder erreichbar").
- `until`: the day an absence lasts until ("out until 18 December", "bis zum 18.12."), read as the
  day back, as "until" mostly means in a notice.
- `through`: the last day away, said to be included ("through", "bis einschließlich", "tot en met",
  a range "from 1 to 18 December", Japanese まで): the writer is back the next weekday.

Opt-out rows are requests a person makes in the first person or the imperative ("remove me",
"nehmen Sie mich aus Ihrem Verteiler"), never the second-person or conditional wording of a
mailing's footer ("if you no longer wish to receive ..."); `footer` rows mark such clauses, and
`negation` rows the words that, just before a request, undo it ("please don't remove me").
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, as dateparser knows it
    spaced: bool = True  # words are separated by spaces: rows match whole words
    reply: tuple[str, ...] = ()  # subject prefixes of a reply, literal ("AW")
    forward: tuple[str, ...] = ()  # subject prefixes of a forward, literal ("WG")
    automatic_prefix: tuple[str, ...] = ()  # subject prefixes an auto-reply puts before the subject it answers, literal
    automatic_subject: tuple[str, ...] = ()  # subject wording of an automatic answer ("^abwesend")
    automatic: tuple[str, ...] = ()  # body wording that says by itself that a machine answered
    away: tuple[str, ...] = ()  # body wording of an absence ("I'm on leave"): a notice when a `notice` row or a return cue comes with it
    notice: tuple[str, ...] = ()  # what absence notices say besides ("for urgent matters", "upon my return")
    back: tuple[str, ...] = ()  # {date}: the day the writer is back
    until: tuple[str, ...] = ()  # {date}: away until that day, read as the day back
    through: tuple[str, ...] = ()  # {date}: the last day away, included: back the next weekday
    opt_out: tuple[str, ...] = ()  # a person asking us to stop
    opt_out_stems: tuple[str, ...] = ()  # lower-case text every opt_out row's match holds one of: a cheap test before the rows
    negation: tuple[str, ...] = ()  # words that undo an opt-out request right after them
    footer: tuple[str, ...] = ()  # the conditional or instructional wording of a mailing's footer


_EN = Language(
    "en",
    reply=("Re",),
    forward=("Fw", "Fwd"),
    automatic_prefix=(
        "Automatic reply", "Automatic response", "Auto-reply", "Auto reply", "AutoReply", "Auto-response",
        "Out of Office", "Out of Office AutoReply", "Out of the Office",
    ),
    automatic_subject=(
        r"^\s*auto(matic|mated)?[\s_-]*(reply|response|respons)", r"^\s*autoreply", r"^\s*auto\s*:", r"^\s*ooo",
        r"^\s*away", r"^\s*absen(ce|t)", r"^\s*on (vacation|holiday|leave)", r"^\s*vacation",
        r"^\s*(ticket|case|request)\s+(received|created|opened|#?\d)",
        r"automatic reply", r"auto-?reply", r"out of (the )?office",
    ),
    automatic=(
        r"this is an? auto(mated|matic|matically generated) (reply|response|message|e-?mail|acknowledge?ment)",
        r"auto(matic|mated)?[\s-]?(reply|response)",
        r"(we|i) (have|'ve) received your (message|e-?mail|request|enquiry|inquiry)",
        r"your (request|ticket|case|message) (has been|was) (received|created|logged|opened)",
        r"##-\s*please type your reply above this line",
    ),
    away=(
        r"(?<!was )(?<!were )(?<!been )out of (the )?office",
        (r"(i am|i'm|i will be|i'll be) (currently |now )?(away|out|off|travell?ing"
        r"|on (annual |parental |maternity |paternity |sick |medical )?(leave|vacation|holiday))"),
        r"(i am|i'm|i will be|i'll be) (currently )?(attending|at) (a|an|the) (conference|trade ?show|trade fair|event|offsite|training)",
    ),
    notice=(
        r"(for|with|regarding) (any(thing)? )?urgent", r"(in case of|if (it is|it's)?) ?urgen(t|cy)", r"please contact",
        r"(limited|no|restricted|intermittent) access to (my )?e-?mail", r"(upon|on) my return", r"when i (get back|return)",
        r"(in|during) my absence", r"will (respond|reply|get back to you|answer)",
    ),
    back=(
        (r"(back|returning|return|available( again)?|reachable( again)?)( (in|to|at) (the|my) (office|desk|work))?"
        r"( (on|from|in|by|as of|starting))? {date}"),
        r"in the office (again )?(on|from|as of) {date}",
    ),
    until=(r"(until|till|til) {date}",),
    through=(
        r"(through|thru|(up )?to and including|until and including) {date}",
        r"{date},? inclusive",
        r"from (\w+,? )?\d[^\n.;]{0,20}? (to|-|–) {date}",
    ),
    opt_out=(
        r"(please |pls |kindly )?unsubscribe (me|us|this (e-?mail|address)|my (e-?mail|address))",
        r"(please|pls|kindly) unsubscribe",
        r"(i|we)('d| would| want| wish| need)?( like)? to (unsubscribe|opt[ -]?out|be (removed|taken off))",
        r"(i|we)( have|'ve)?( already)? unsubscribed",
        r"^\W*(unsubscribe|remove|stop|opt[ -]?out)\W*$",
        (r"remove (me|us|my (e-?mail|address|name|details|contact( details)?|data))"
        r"( (from|off) (your|this|the|all|any)( [\w-]+){0,3} (lists?|database|mailing|distribution|e-?mails?|contacts"
        r"|system|records|sequence|campaign|newsletter)|\W*$)"),
        (r"take (me|us|my (e-?mail|address|name)) off"
        r"( (your|this|the|all|any)( [\w-]+){0,3} (lists?|mailing|distribution|e-?mails?|database)|\W*$)"),
        (r"(stop|quit|cease) (e-?mailing|mailing|contacting|messaging|spamming|writing to|reaching out to"
        r"|sending (me|us|these|this|them|e-?mails?))"),
        (r"(do not|don't|dont|never|please don't) (e-?mail|contact|write to|message|send e-?mails to) (me|us)"
        r"( (again|anymore|any more|ever again|in (the )?future|further))?\W*$"),
        r"no (more|further) (e-?mails|emails|messages|contact|mail|follow-?ups)",
        r"opt (me|us) out",
        r"not interested.{0,30}\bstop",
        r"(please|pls|kindly) stop\s*(it|this|that|now|them)?\s*[.!]*$",
        r"(delete|erase) (my|our) (data|details|e-?mail( address)?|address|contact (details|information))",
    ),
    opt_out_stems=("unsubscrib", "remov", "take", "stop", "quit", "cease", "mail", "contact", "write", "message", "no more", "no further", "opt", "delete", "erase"),
    negation=(
        (r"don't|do not|dont|didn't|did not|never|no need to|not (asking|trying|want(ing)?) to|won't|wouldn't|not to"
        r"|rather not|shouldn't"),
    ),
    footer=(
        (r"if you( would)?( no longer| do not| don't| prefer not to| would rather not)?( wish| want| like| prefer)?( to)?"
        r" (receive|get|unsubscribe|opt[ -]?out|be removed|hear from)"),
        r"^\W*to (unsubscribe|opt[ -]?out|stop receiving)",
        r"(click|tap|reply|here|link|button)\W[^.]{0,20}\bto (unsubscribe|opt[ -]?out)",
        r"click( here)?",
        r"you (can|may) (unsubscribe|opt|update|manage|change)",
        r"you (are receiving|received) this",
        r"unsubscribe (here|at any time|link|from (this|these|our|all))",
        r"(manage|update) (your )?(e-?mail )?(preferences|subscriptions?)",
    ),
)

_DE = Language(
    "de",
    reply=("AW", "Antwort"),
    forward=("WG", "Wtr"),
    automatic_prefix=("Abwesenheitsnotiz", "Automatische Antwort"),
    automatic_subject=(
        r"^\s*abwesen(heit|d)", r"^\s*urlaub", r"^\s*automatische[\s_-]*antwort", r"abwesenheitsnotiz", r"automatische antwort",
    ),
    automatic=(
        r"abwesenheitsnotiz", r"automatische antwort",
        r"diese (e-?mail|nachricht) wurde automatisch (erstellt|generiert|versendet|versandt)",
    ),
    away=(
        (r"(ich bin|bin ich)\b.{0,40}\b(nicht im büro|abwesend|im urlaub|außer haus|auf dienstreise|in elternzeit"
        r"|nicht erreichbar)"),
        (r"(befinde mich|bin) (derzeit |zurzeit |aktuell |momentan )?(im urlaub|auf (einer )?dienstreise|außer haus"
        r"|nicht im büro|in elternzeit)"),
    ),
    notice=(
        r"in dringenden fällen", r"dringende(n)? (anliegen|angelegenheiten|fragen)", r"wenden sie sich (bitte )?an",
        r"nach meiner rückkehr", r"(eingeschränkt|keinen|begrenzt)(en)? zugriff", r"in meiner abwesenheit",
        r"(e-?mail|nachricht) wird nicht weitergeleitet", r"vertret(ung|en)",
    ),
    back=(
        r"(zurück|wieder (im büro|erreichbar|da|verfügbar|am platz|zurück|für sie da))( (am|ab|ab dem|ab den))? {date}",
        r"ab( dem| den)? {date},? (bin ich |ich |stehe ich |sind wir )?(wieder|zurück)",
        r"{date},? (bin ich |ich )?wieder (im büro|erreichbar|da|verfügbar|zurück|für sie)",
    ),
    until=(r"bis( zum| zur| am)? {date}",),
    through=(
        r"bis (einschließlich|einschl\.|inklusive|inkl\.)( zum| dem| den)? {date}",
        r"vom (\w+,? )?\d[^\n;]{0,20}? bis( zum)? {date}",
        r"{date},? (einschließlich|inklusive)",
    ),
    opt_out=(
        (r"(nehmen|streichen|entfernen|löschen|tragen) sie (bitte )?(mich|meine (e-?mail-?)?adresse|meine daten"
        r"|meinen kontakt) (bitte )?(aus|von)"),
        (r"(mich|meine (e-?mail-?)?adresse|meine daten|meinen kontakt) (bitte )?(aus|von) (ihrem|ihrer|ihren|dem|der|den"
        r"|eurem|eurer)( \w+){0,2} (zu )?(nehmen|streichen|entfernen|löschen|austragen)"),
        r"(melden|tragen) sie mich (bitte )?(ab|aus)",
        (r"(ich )?(möchte|will) (mich )?((?!nicht|nie|kein)\w+ ){0,4}(abmelden|austragen|abbestellen|gelöscht werden"
        r"|entfernt werden)"),
        r"(ich )?(möchte|will) keine \w+ mehr",
        r"nicht mehr (kontaktieren|anschreiben|anmailen|zu kontaktieren|kontaktiert werden)",
        r"(kontaktieren|schreiben|mailen) sie mi(ch|r) (bitte )?nicht mehr",
        r"bitte keine (weiteren )?(e-?mails|mails|nachrichten|zusendungen|werbung|newsletter)",
        r"keine (weiteren )?(e-?mails|mails|nachrichten|zusendungen|werbung|newsletter) mehr",
        r"(ich )?(widerspreche|widerrufe) (der|die|meine) (verwendung|nutzung|einwilligung|zusendung)",
        r"^\W*(bitte )?(abmelden|austragen|abbestellen)\W*$",
    ),
    opt_out_stems=("nehmen", "streichen", "entfern", "lösch", "trag", "meld", "abbestell", "mehr", "keine", "widersp", "widerruf"),
    negation=(r"nicht|kein|keine|niemals|nie",),
    footer=(
        r"(wenn|falls) sie (\w+ ){0,4}(erhalten|abmelden|abbestellen|austragen|empfangen)",
        r"um (sich )?(abzumelden|auszutragen|abzubestellen)", r"klicken sie", r"hier (abmelden|klicken|austragen)",
        r"können sich (jederzeit )?(hier )?(abmelden|austragen)",
    ),
)

_FR = Language(
    "fr",
    reply=("RE", "Réf", "Rép"),
    forward=("TR", "Fwd"),
    automatic_prefix=("Réponse automatique", "Réponse automatique d'absence du bureau"),
    automatic_subject=(r"^\s*absen(ce|t)", r"^\s*hors du bureau", r"^\s*(réponse|reponse) automatique", r"réponse automatique"),
    automatic=(r"réponse automatique", r"(ceci est un|ce) message (est )?(automatique|généré automatiquement)"),
    away=(
        r"je (suis|serai) (actuellement )?(absente?|en congés?|en vacances|en déplacement|hors du bureau|en arrêt maladie)",
        r"(actuellement )?absente? du bureau",
    ),
    notice=(
        r"en cas d'urgence", r"pour toute (urgence|demande urgente|question urgente)", r"(veuillez|merci de) contacter",
        r"(à|dès) mon retour", r"accès (limité|restreint)", r"en mon absence", r"je (traiterai|répondrai)",
    ),
    back=(
        r"(à|dès) mon retour,? (le |prévu le )?{date}",
        (r"(de retour|retour|je rentre|rentrerai|je reviens|reviendrai|disponible( à nouveau)?)( au bureau)?"
        r"( (le|à partir du|dès le|dès))? {date}"),
        r"(à partir du|dès le) {date},? (je serai )?(de retour|à nouveau|disponible)",
    ),
    until=(r"jusqu'(au|à|a)( le)? {date}",),
    through=(r"jusqu'(au|à) {date},? inclus", r"du (\w+ )?\d[^\n;]{0,20}? au {date}"),
    opt_out=(
        r"(retirez|supprimez|enlevez|effacez|désinscrivez|désabonnez|radiez)[- ]moi",
        r"me (retirer|supprimer|désinscrire|désabonner|radier|enlever)( de| des|\W*$)",
        (r"(retirer|supprimer|effacer|enlever|radier|retirez|supprimez|effacez|enlevez|radiez)"
         r" (mon adresse|mon e-?mail|mes coordonnées|mes données|mon nom)"),
        r"(arrêtez|cessez) de (m'envoyer|me contacter|m'écrire|me solliciter)",
        (r"je (souhaite|voudrais|veux|souhaiterais|désire) (me désabonner|me désinscrire"
        r"|être (retirée?|supprimée?|désinscrite?)|ne plus (être contactée?|recevoir))"),
        r"ne plus (me )?(contacter|recevoir|écrire|solliciter|envoyer)",
        r"ne (me )?(contactez|écrivez|envoyez|sollicitez) plus",
        r"^\W*(désinscription|désabonnement|désabonner|désinscrire)\W*$",
    ),
    opt_out_stems=("retir", "supprim", "enlev", "effac", "désinscri", "désabonn", "radi", "plus", "arrêt", "cess"),
    negation=(r"ne pas|pas|jamais|inutile de|pas besoin de|pas la peine de",),
    footer=(
        r"si vous (ne )?(souhaitez|voulez|désirez) (plus |ne plus |vous )?(recevoir|désabonner|désinscrire)",
        r"pour (vous|se) (désabonner|désinscrire)", r"cliquez", r"vous pouvez vous (désabonner|désinscrire)",
    ),
)

_ES = Language(
    "es",
    reply=("RE",),
    forward=("RV", "Reenviado"),
    automatic_prefix=("Respuesta automática", "Respuesta automatica", "Fuera de la oficina"),
    automatic_subject=(r"^\s*fuera de la oficina", r"^\s*ausente", r"^\s*respuesta autom[aá]tica", r"respuesta automática"),
    automatic=(r"respuesta automática", r"(este es un|es un) mensaje automático"),
    away=(
        r"(estoy|estaré|me encuentro) (actualmente |de momento )?(fuera de la oficina|de vacaciones|ausente|de viaje|fuera)",
        r"fuera de la oficina",
        r"(estoy|me encuentro) de (baja|permiso)( por (maternidad|paternidad|enfermedad)| médica)?",
    ),
    notice=(
        r"(para|en caso de) (asuntos |temas |consultas )?urgen(tes|te|cia)", r"(contacte|póngase en contacto) con",
        r"a mi (regreso|vuelta)", r"acceso limitado", r"en mi ausencia", r"responderé",
    ),
    back=(
        r"a mi (regreso|vuelta),? (el |previsto para el )?{date}",
        (r"(regreso|regresaré|vuelvo|volveré|estaré de vuelta|de vuelta|me reincorporo|me reincorporaré|retorno|disponible)"
        r"( a la oficina)?( (el|a partir del|desde el))? {date}"),
        r"a partir del {date},? (estaré )?(de vuelta|disponible|de nuevo)",
    ),
    until=(r"hasta( el)? {date}",),
    through=(r"hasta el {date},? inclusive", r"del (\w+ )?\d[^\n;]{0,20}? al {date}"),
    opt_out=(
        (r"no me (envíen|envien|escriban|contacten|manden|molesten|vuelvan a (escribir|contactar|enviar))( \w+){0,2}"
        r"( más|\W*$)"),
        r"(denme|darme|me den|me dé|me de) de baja",
        r"(elimínenme|eliminenme|bórrenme|borrenme|quítenme|quitenme|sáquenme|saquenme)",
        r"(eliminen|borren|quiten|saquen) (mi (correo|dirección|email|e-?mail)|mis datos)",
        r"no (quiero|deseo) (recibir más|seguir recibiendo)",
        r"dejen de (escribirme|enviarme|contactarme|mandarme)",
    ),
    opt_out_stems=("no me", "baja", "elimin", "elimín", "bórr", "borr", "quít", "quit", "sáqu", "saqu", "recib", "dejen"),
    negation=(r"no(?!\s*[,.!])|nunca|jamás",),
    footer=(
        r"si (usted )?(ya )?no (desea|quiere) (seguir )?recibir", r"si (desea|quiere) (darse de baja|dejar de recibir)",
        r"para darse de baja", r"haga clic", r"puede darse de baja",
    ),
)

_IT = Language(
    "it",
    reply=("R", "Rif", "Risposta"),
    forward=("I", "Inoltro", "Fwd"),
    automatic_prefix=("Risposta automatica",),
    automatic_subject=(r"^\s*fuori (ufficio|sede)", r"^\s*assente", r"^\s*risposta automatica", r"risposta automatica"),
    automatic=(r"risposta automatica", r"(questo è un|è un) messaggio (automatico|generato automaticamente)"),
    away=((r"(sono|sarò) (attualmente |al momento )?(assente|fuori (ufficio|sede)|in ferie|in vacanza|in trasferta|in maternità"
          r"|in (congedo|malattia|permesso))"),),
    notice=(
        r"per (questioni|comunicazioni|richieste|necessità)? ?urgent[ie]", r"in caso di urgenza", r"contattare",
        r"al mio (rientro|ritorno)", r"accesso limitato", r"risponderò",
    ),
    back=(
        r"al mio (rientro|ritorno),? (previsto per |previsto il |il )?{date}",
        r"(rientro|rientrerò|sarò di ritorno|di ritorno|torno|tornerò|disponibile)( in ufficio)?( (il|dal|a partire dal))? {date}",
        r"a partire da(l|ll') {date},? (sarò )?(di nuovo|nuovamente|di ritorno|disponibile)",
    ),
    until=(r"fino (al|a|all')( giorno)? {date}",),
    through=(r"fino (al|a) {date},? compreso", r"dal (\w+ )?\d[^\n;]{0,20}? al {date}"),
    opt_out=(
        r"non (contattatemi|scrivetemi|mandatemi|inviatemi|chiamatemi)( \w+){0,2}( più|\W*$)",
        r"non mi (contattate|scrivete|mandate|inviate)( \w+){0,2} più",
        r"(cancellatemi|rimuovetemi|toglietemi|eliminatemi|disiscrivetemi)",
        r"(cancellarmi|rimuovermi|togliermi|eliminarmi|disiscrivermi)",
        r"(vorrei|voglio|desidero) (essere (cancellat|rimoss|tolt)[oa]|cancellarmi|disiscrivermi|non ricevere più)",
        r"non (voglio|desidero) (più )?ricevere",
        (r"(cancellate|rimuovete|togliete|eliminate) (il mio (indirizzo|nominativo|contatto)|la mia (e-?mail|mail)"
        r"|i miei dati)"),
    ),
    opt_out_stems=("non ", "cancell", "rimu", "rimo", "togli", "tolt", "elimin", "disiscri"),
    negation=(r"non|mai",),
    footer=(
        r"se non (desidera|vuoi|volete) (più )?ricevere",
        r"se (desidera|vuoi|volete) (cancellarsi|cancellarti|disiscriversi|disiscriverti)",
        r"per (cancellarti|cancellarsi|disiscriverti|disiscriversi)", r"clicca",
    ),
)

_NL = Language(
    "nl",
    reply=("Antw", "Antwoord"),
    forward=("Doorst", "Fwd"),
    automatic_prefix=("Automatisch antwoord",),
    automatic_subject=(r"^\s*afwezig", r"^\s*niet aanwezig", r"^\s*automatisch antwoord", r"automatisch antwoord"),
    automatic=(r"automatisch antwoord", r"(dit is een|dit) automatisch (gegenereerd )?bericht"),
    away=(
        (r"ik ben\b.{0,40}\b(afwezig|niet aanwezig|op vakantie|met vakantie|met (zwangerschaps|ouderschaps|bevallings)?verlof"
         r"|niet op kantoor|buiten kantoor)"),
    ),
    notice=(
        r"voor dringende (zaken|vragen)", r"in dringende gevallen", r"contact op(nemen)? met", r"na mijn terugkeer",
        r"beperkt(e)? toegang", r"(bij|tijdens) mijn afwezigheid", r"(beantwoord|reageer|antwoord)",
    ),
    back=(
        r"(terug|weer aanwezig|weer op kantoor|weer bereikbaar|ben ik weer)( op kantoor)?( (op|vanaf|per))? {date}",
        r"vanaf {date},? (ben ik )?(weer|terug)",
        r"{date},? ben ik (weer|terug)",
    ),
    until=(r"tot {date}",),
    through=(r"(tot en met|t/m|t\.m\.) {date}",),
    opt_out=(
        r"haal (mij|me|mijn (e-?mail)?adres) (van|uit) (uw|jullie|de|het|je|deze)",
        r"verwijder (mij|me|mijn (e-?mail)?adres|mijn gegevens)",
        r"(schrijf|meld) (mij|me) (alstublieft |aub |graag )?(uit|af)",
        r"ik wil (mij |me )?(graag )?(afmelden|uitschrijven|geen (e-?mails|mails|berichten) meer)",
        r"(neem|neemt) (alstublieft |aub |a\.u\.b\. |graag )?(geen|niet) (meer )?contact (meer )?met (mij|me) op",
        r"(graag|liever) geen (e-?mails|mails|berichten) meer",
        r"stuur (mij|me) geen (e-?mails|mails|berichten)( meer)?",
        r"niet meer (mailen|e-?mailen|contacteren|benaderen)",
    ),
    opt_out_stems=("haal", "verwijder", "schrijf", "schrijv", "meld", "contact", "geen", "niet meer"),
    negation=(r"niet|geen|nooit",),
    footer=(
        r"(als|indien) (u|je) (\w+ ){0,4}(ontvangen|afmelden|uitschrijven)", r"om (u|je|zich) af te melden", r"klik",
        r"wilt u (\w+ ){0,4}(ontvangen|afmelden)", r"(u|je) kunt (u|je|zich) (hier )?afmelden",
    ),
)

_PT = Language(
    "pt",
    reply=("RES", "Resp"),
    forward=("ENC", "Fwd"),
    automatic_prefix=("Resposta automática", "Resposta automatica"),
    automatic_subject=(r"^\s*ausente", r"^\s*fora do escritório", r"^\s*resposta autom[aá]tica", r"resposta automática"),
    automatic=(r"resposta automática", r"esta é uma mensagem automática"),
    away=(
        (r"(estou|estarei|encontro-me|me encontro) (atualmente |actualmente |neste momento )?(de férias|fora do escritório"
        r"|ausente|em viagem|de licença)"),
        r"fora do escritório",
    ),
    notice=(
        r"(para|em caso de) (assuntos |questões |temas )?urgen(tes|te|cia)", r"(contacte|contate|entre em contato com|contactar)",
        r"(no meu|ao meu|após o meu) (regresso|retorno)", r"quando (regressar|retornar|voltar)", r"acesso limitado",
        r"responderei",
    ),
    back=(
        (r"(regresso|regressarei|retorno|retornarei|volto|voltarei|estarei de volta|de volta)( ao escritório)?"
        r"( (em|no dia|a|dia|na|no))? {date}"),
        r"a partir d[eo]( dia)? {date},? (estarei )?(de volta|disponível|novamente)",
    ),
    until=(r"até( (o dia|dia|ao dia|a|o))? {date}",),
    through=(r"até (o dia )?{date},? inclusive", r"(de|do dia) \d[^\n;]{0,20}? (a|até) {date}"),
    opt_out=(
        r"não me (contactem|contatem|enviem|mandem|escrevam|liguem)( \w+){0,2}( mais|\W*$)",
        r"(removam|retirem|tirem|excluam|apaguem|descadastrem|descadastre|remova|retire|exclua)[- ]me",
        r"me (removam|retirem|tirem|excluam|descadastrem|descadastre)",
        (r"(removam|retirem|tirem|excluam|apaguem|remova|retire|exclua|apague) (o )?(meu|minha)"
         r" (e-?mail|endereço|contato|cadastro|nome|dados)"),
        (r"(quero|gostaria de|desejo) (me )?(descadastrar|sair da (sua |vossa )?lista"
        r"|cancelar (a )?(minha )?(inscrição|subscrição|assinatura)|ser removid[oa]|não receber mais)"),
        r"não (quero|desejo) (mais )?receber",
        r"parem de (me )?(enviar|contactar|contatar|mandar|escrever)",
    ),
    opt_out_stems=("não", "remov", "retir", "tirem", "exclu", "apag", "descadastr", "sair", "cancel", "parem"),
    negation=(r"não|nunca",),
    footer=(
        r"(se|caso) (você )?(não )?(deseja|desejar|quiser|queira|deseje) (mais )?(receber|descadastrar|cancelar)",
        r"para (se )?descadastrar", r"clique", r"pode (se )?descadastrar",
    ),
)

_PL = Language(
    "pl",
    reply=("Odp", "Odpowiedź"),
    forward=("PD", "Prześlij dalej"),
    automatic_prefix=("Odpowiedź automatyczna", "Automatyczna odpowiedź"),
    automatic_subject=(
        r"^\s*nieobecn", r"^\s*poza biurem", r"(odpowiedź|odpowiedz) automatyczna", r"automatyczna (odpowiedź|odpowiedz)",
    ),
    automatic=(r"odpowiedź automatyczna", r"automatyczna odpowiedź", r"wiadomość (została )?wygenerowana automatycznie"),
    away=(
        r"(jestem|będę|przebywam) (obecnie |aktualnie )?(nieobecn[ya]|na urlopie|poza biurem|w podróży służbowej|na zwolnieniu)",
        r"poza biurem",
    ),
    notice=(r"w (pilnych|nagłych) sprawach", r"proszę o kontakt z", r"po (moim )?powrocie", r"ograniczony dostęp", r"odpowiem"),
    back=(
        r"po (moim )?powrocie,? (w dniu |dnia )?{date}",
        r"(wracam|wrócę|będę z powrotem|z powrotem|powrót|będę dostępn[ya]|dostępn[ya])( w biurze)?( (w dniu|dnia|od|w))? {date}",
        r"od {date},? (będę|jestem) (ponownie |znów )?(dostępn[ya]|w biurze|z powrotem)",
    ),
    until=(r"do( dnia)? {date}",),
    through=(r"do( dnia)? {date},? włącznie", r"od (\w+ )?\d[^\n;]{0,20}? do( dnia)? {date}"),
    opt_out=(
        (r"(proszę|prosze|prosimy) (o )?(usunąć|usunac|usunięcie|wypisać|wypisanie|wykreślić|wykreślenie)"
        r" (mnie|mojego|mój|moich|nas)"),
        r"(proszę|prosze) mnie (usunąć|wypisać|wykreślić)",
        r"(usuńcie|usuń|wypiszcie|wykreślcie) (mnie|mój adres|moje dane|nas)",
        r"nie (kontaktujcie|piszcie|wysyłajcie) (się ze mną|do mnie|mi)",
        r"(proszę|prosze) (się ze mną )?(więcej )?nie (kontaktować|pisać|wysyłać)",
        r"nie (chcę|życzę sobie) (więcej |dalej )?(otrzymywać|dostawać|kontaktu|wiadomości)",
        r"(chcę|chciałbym|chciałabym) (się )?wypisać",
    ),
    opt_out_stems=("usun", "usuń", "wypis", "wykreśl", "nie "),
    negation=(r"nie|nigdy",),
    footer=(
        r"(jeśli|jeżeli) (nie )?(chcesz|chcą państwo|chcecie|życzysz sobie) (\w+ ){0,3}(otrzymywać|wypisać|dostawać)",
        r"aby (się )?wypisać", r"kliknij", r"możesz (się )?wypisać",
    ),
)

_SV = Language(
    "sv",
    reply=("SV", "Svar"),
    forward=("VB", "VS", "Vidarebefordrat"),
    automatic_prefix=("Automatiskt svar", "Autosvar"),
    automatic_subject=(r"^\s*frånvar", r"^\s*ej på kontoret", r"^\s*autosvar", r"automatiskt svar"),
    automatic=(r"automatiskt svar", r"frånvaromeddelande", r"(detta är ett|ett) automatiskt (svar|meddelande)"),
    away=(
        r"jag har (semester|ledigt)",
        (r"jag är (för närvarande |just nu )?(ledig|på semester|tjänstledig|föräldraledig|bortrest|inte på kontoret"
        r"|på tjänsteresa|frånvarande)"),
    ),
    notice=(r"(vid |i )?brådskande ärenden", r"kontakta", r"när jag (är )?tillbaka", r"begränsad tillgång", r"(svarar|besvarar)"),
    back=(r"(tillbaka|åter|på plats igen|tillgänglig igen|på kontoret igen)( på kontoret)?( (den|på|från|måndag))? {date}",),
    until=(r"(fram )?till {date}",),
    through=(r"(till och med|t\.o\.m\.|tom) {date}", r"från (\w+ )?\d[^\n;]{0,20}? (till|-|–) {date}"),
    opt_out=(
        r"ta bort (mig|min (e-?post(adress)?|adress|mejladress)|mina uppgifter)( (från|ur)|\W*$)",
        r"(avregistrera|avprenumerera) mig",
        (r"jag vill (inte (längre )?(ha|få) (fler|mer|några) (mejl|mail|e-?post|utskick)|avregistrera mig"
        r"|avsluta (min )?prenumeration|bli borttagen)"),
        r"(kontakta|mejla|maila) (mig|oss) inte (igen|mer|längre)",
        r"sluta (mejla|maila|skicka|kontakta|höra av er)",
        r"inga fler (mejl|mail|e-?post|utskick|meddelanden)",
        r"(stryk|radera) (mig|min adress|mina uppgifter)",
    ),
    opt_out_stems=("ta bort", "avregistrera", "avprenumerera", "jag vill", "inte", "sluta", "inga fler", "stryk", "radera"),
    negation=(r"inte|ej|aldrig",),
    footer=(
        r"om du (inte )?(längre )?(vill|önskar) (\w+ ){0,3}(få|ta emot|avregistrera|avsluta)",
        r"för att (avregistrera|avsluta|säga upp)", r"klicka", r"du kan (avregistrera|avsluta)",
    ),
)

_JA = Language(
    "ja",
    spaced=False,
    reply=("返信", "Re"),
    forward=("転送",),
    automatic_prefix=("自動返信", "自動応答", "不在通知"),
    automatic_subject=(r"自動(返信|応答)", r"不在(通知|のお知らせ)", r"^\s*不在"),
    automatic=(r"自動(返信|応答)", r"本メールは自動"),
    away=(
        (r"(不在|出張|休暇|外出|休み|夏季休暇|年末年始休暇|産休|育休|育児休業|産前産後休暇)(中|のため|にしております|しております|を(いただ|頂|取得)"
        r"|となっております|となります|です)"),
    ),
    notice=(
        r"急ぎ", r"緊急", r"順次(ご)?(返信|対応|回答)", r"戻り次第", r"返信(が|は)遅れ", r"ご迷惑をおかけ", r"ご不便", r"誠に勝手ながら",
        r"連絡(先|ください)",
    ),
    back=(r"{date}(（[^）]{1,3}）|\([^)]{1,3}\))?(より|から|以降|に)(は)?(出社|出勤|復帰|戻り|戻ります|通常|業務|対応|ご返信|返信|回答)",),
    through=(r"{date}(（[^）]{1,3}）|\([^)]{1,3}\))?まで", r"[〜～~]\s*{date}"),
    opt_out=(
        r"配信(を|は)?(停止|解除)(を)?(して(ください|下さい|いただけ|頂け)|お願い(します|いたします|致します)|願います|希望します)",
        r"今後(は)?(の)?(ご)?(連絡|メール|ご案内|案内|送付|配信)(は|を)?(不要|結構|ご遠慮|お控え|しないで|送らないで|止めて|やめて)",
        r"(メール|連絡)を(送らないで|しないで)(ください|下さい)",
        r"(メール|ご連絡|連絡|ご案内|送信|送付|配信)(は|を)(ご遠慮|お控え)(ください|下さい|願います)",
        r"(リスト|配信リスト|名簿|メーリングリスト)から(私を|弊社を)?(削除|外)(して(ください|下さい|いただけ|頂け)|をお願い)",
        r"配信不要",
    ),
    opt_out_stems=("配信", "今後", "送らないで", "しないで", "リスト", "名簿", "ご遠慮", "お控え"),
    footer=(r"ご希望の(方|場合)", r"こちら", r"クリック"),
)

_ZH = Language(
    "zh",
    spaced=False,
    reply=("回复", "答复", "回覆", "答覆"),
    forward=("转发", "轉寄", "轉發"),
    automatic_prefix=("自动回复", "自動回覆", "自动答复", "自動回復"),
    automatic_subject=(r"自动(回复|答复)", r"自動(回覆|回復|答覆)"),
    automatic=(r"自动(回复|答复)", r"自動(回覆|回復|答覆)", r"(这|這)是一封自(动|動)"),
    away=(r"(正在|目前|我|本人)(正在|目前)?在?(休(产|產|婚|病|年)?假|出差|不在(办公室|辦公室)?)", r"(休假|出差)(中|期间|期間|至)",
          r"在.{0,3}(休假|出差)"),
    notice=(
        r"紧急|緊急", r"(请|請)(联系|聯繫|联络|聯絡)", r"(回来|回來|返回)(后|後)", r"(尽快|盡快)(回复|回覆)",
        r"无法及时(回复|处理)|無法及時(回覆|處理)",
    ),
    back=(r"{date}(起|后|後)?(返回|回来|回來|回到|返岗|返崗|上班|恢复|恢復|回复|回覆)",),
    until=(r"{date}(之前|前)",),
    through=(r"(至|到|直到){date}",),
    opt_out=(
        r"(请|請)?(将|把|將)我(的)?(邮箱|郵箱|邮件地址|郵件地址|地址|电邮|電郵)?(从|從).{0,12}(删除|刪除|移除)",
        r"(请|請)(不要|勿|别|別)再?(给我|給我)?(发|發|寄|联系|聯繫|联络|聯絡|打扰|打擾)",
        r"不要再(给我|給我)?(发|發|寄)(邮件|郵件|信息|消息)",
        r"(我要|我想|我希望|请|請|请帮我|請幫我)(退订|退訂|取消订阅|取消訂閱)",
        r"^\W*(退订|退訂|取消订阅|取消訂閱)\W*$",
    ),
    opt_out_stems=("我", "请", "請", "不要", "退订", "退訂", "取消订阅", "取消訂閱"),
    footer=(r"如需", r"如果您(不想|不希望|想要)", r"点击|點擊"),
)

_KO = Language(
    "ko",
    spaced=False,
    reply=("회신", "답장", "답신"),
    forward=("전달",),
    automatic_prefix=("자동 회신", "자동회신", "자동 응답", "자동응답"),
    automatic_subject=(r"자동 ?(회신|응답)", r"^\s*부재 ?중"),
    automatic=(r"자동 ?(회신|응답)", r"자동으로 (발송|생성)"),
    away=(r"(휴가|출장|부재|외근|연차|육아휴직|출산휴가|병가|휴직)(\s?중|로 인해|로|입니다)",),
    notice=(
        r"급한|긴급", r"연락(해|주시| 주시)", r"복귀 ?(후|하는 대로)", r"돌아오는 대로", r"(답변|회신)(을|이)? ?드리",
        r"양해 ?(부탁|바랍)", r"늦어질 수",
    ),
    back=(r"{date}(에|부터|부터는)? ?(복귀|출근|돌아|사무실에 복귀|업무에 복귀|정상 근무)",),
    through=(r"{date}\s?까지",),
    opt_out=(
        (r"(연락|메일|이메일)(을|를|은|는)? ?(더 이상 |다시는? |앞으로 )?(하지|보내지|주지) ?"
         r"(마세요|마십시오|말아 ?주세요|말아 ?주십시오)"),
        r"수신 ?거부(합니다|하겠습니다|해 ?주세요|해 ?주십시오|를 요청|요청)",
        r"(목록|명단|리스트)에서 (저를 |제 (이메일|메일|주소)를 )?(삭제|제외|빼)(해 ?주세요|해 ?주십시오|주세요|주십시오)",
        r"구독(을)? ?(취소|해지)(해 ?주세요|합니다|하겠습니다)",
    ),
    opt_out_stems=("마세요", "마십시오", "말아", "거부", "에서", "구독"),
    footer=(r"원하지 않으시면|원하시면", r"클릭"),
)

_HI = Language(
    "hi",
    reply=("उत्तर", "जवाब"),
    forward=("अग्रेषित",),
    automatic_prefix=("स्वचालित उत्तर", "स्वतः उत्तर", "स्वचालित जवाब"),
    automatic_subject=(r"स्वचालित (उत्तर|जवाब)", r"स्वतः (उत्तर|जवाब)", r"^\s*कार्यालय से बाहर"),
    automatic=(r"स्वचालित (उत्तर|जवाब|संदेश)", r"स्वतः (उत्तर|जवाब)"),
    away=(
        r"(मैं )?(कार्यालय|ऑफिस|दफ्तर) से बाहर (हूं|हूँ|रहूंगा|रहूँगा|रहूंगी|रहूँगी)",
        r"(मैं )?(छुट्टी|अवकाश|यात्रा) पर (हूं|हूँ|रहूंगा|रहूँगा|रहूंगी|रहूँगी)",
    ),
    notice=(
        r"अत्यावश्यक|तत्काल|आपातकालीन|जरूरी|ज़रूरी", r"संपर्क करें", r"(वापस (आने|लौटने) पर|लौटने के बाद)",
        r"(जवाब|उत्तर) (दूंगा|दूँगा|दूंगी|दूँगी)",
    ),
    back=(r"{date} (को|से) ((कार्यालय|ऑफिस|दफ्तर) (में )?)?(वापस|लौट|उपलब्ध)",),
    until=(r"{date} तक",),
    through=(r"\d{1,2} से {date} तक",),
    opt_out=(
        r"(मुझे|मेरा (ईमेल|नाम|पता)) (अपनी |आपकी )?(सूची|लिस्ट|मेलिंग सूची) से (हटा|निकाल) (दें|दीजिए|दीजिये|दो)",
        r"(मुझसे|मुझे) (\S+ ){0,2}(संपर्क|ईमेल|मेल|संदेश) (न|मत) (करें|कीजिए|भेजें|भेजिए|करो|भेजो)",
        r"(मुझे )?(और|अब|आगे) (ईमेल|मेल|संदेश) (न|मत) (भेजें|भेजिए|भेजो)",
        r"(मेरी )?सदस्यता (रद्द|समाप्त) (कर दें|करें|कीजिए|करना चाहता|करना चाहती)",
    ),
    opt_out_stems=("हटा", "निकाल", "न ", "मत", "सदस्यता"),
    footer=(r"यदि आप|अगर आप", r"क्लिक"),
)

LANGUAGES: tuple[Language, ...] = (_EN, _DE, _FR, _ES, _IT, _NL, _PT, _PL, _SV, _JA, _ZH, _KO, _HI)


def words(row: str, spaced: bool) -> str:
    """A row as a pattern that, in a spaced language, matches whole words only."""
    return rf"(?<!\w)(?:{row})(?!\w)" if spaced else f"(?:{row})"


def pattern(*fields: str, languages: tuple[Language, ...] = LANGUAGES, named: bool = False) -> re.Pattern[str] | None:
    """One pattern for the rows of these fields in these languages; None when they have none. With
    `named`, each language's rows are a group named by its code: a match's `lastgroup` is its language."""
    spaced: list[str] = []
    unspaced: list[str] = []
    for language in languages:
        rows = [row for field in fields for row in getattr(language, field)]
        if rows:
            body = "|".join(rf"(?:{row})(?!\w)" if language.spaced else f"(?:{row})" for row in rows)
            (spaced if language.spaced else unspaced).append(f"(?P<{language.code}>{body})" if named else body)
    # one test for the start of a word before all the rows that need it: much cheaper than one a row
    parts = ([rf"(?<!\w)(?:{'|'.join(spaced)})"] if spaced else []) + unspaced
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None
