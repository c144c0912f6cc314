"""The labelled corpus: realistic Danish and English mail from law firms and municipalities.

Labels follow Datatilsynet's practice (what the sender would have to encrypt),
not what the detectors happen to find. Names, numbers and cases are invented;
CPR numbers use real date rules, some with and some without modulus 11.
"""

from __future__ import annotations

from functools import cache

from tests.corpus.build import (
    Attachment,
    Case,
    make_aes_zip,
    make_docx,
    make_odt,
    make_pdf,
    make_pptx,
    make_rtf,
    make_xlsx,
    make_zip,
    make_zipcrypto_zip,
)

PUBLIC, CONFIDENTIAL, SENSITIVE = "public", "confidential", "sensitive"

# 070761-4285 passes modulus 11; 010190-1234 and 240405-7123 do not (issued since 2007).
CPR_MOD11 = "070761-4285"
CPR_PLAIN = "010190-1234"
CPR_2005 = "240405-7123"


def _public() -> list[Case]:
    return [
        Case("pub-meeting", PUBLIC, "Mødeindkaldelse: styregruppe 12. marts",
             "Hej alle\n\nHermed indkaldelse til styregruppemøde torsdag den 12. marts kl. 10-12 i "
             "mødelokale 3. Dagsorden følger senest fredag.\n\nMed venlig hilsen\nLise Holm\n"
             "Tlf. 72 34 56 78"),
        Case("pub-newsletter-health", PUBLIC, "Nyhedsbrev marts: sundhed og trivsel på arbejdspladsen",
             "Kære medarbejdere\n\nI marts sætter vi fokus på sundhed og trivsel. Kantinen serverer "
             "frugt hver dag, og der er gratis løbeklub tirsdag. Husk også at tage trappen!\n\n"
             "HR-teamet", note="single generic health word"),
        Case("pub-invoice-order", PUBLIC, "Ordrebekræftelse 2403151234",
             "Tak for din ordre.\nOrdrenr. 2403151234\nLevering: uge 14\nVarer: 4 x toner HP 305A\n"
             "Beløb: 2.396,00 kr. inkl. moms\nEAN 5790001234567\n", note="order number with a date-valid prefix"),
        Case("pub-phone-list", PUBLIC, "Telefonliste for vagten",
             "Vagttelefon: +45 7012 3456\nLise: 2030 4050\nPeter: 40 50 60 70\nTelefon 4520304050 "
             "(gammel omstilling)\nFax 7010 2030"),
        Case("pub-dates", PUBLIC, "Tidsplan for projektet",
             "Fase 1: 01.03.2026 - 15.04.2026\nFase 2: 16-04-2026 til 30-06-2026\nDeadline 2026-09-01\n"
             "Reference: 010326-1500 (mødenr.)", note="dates and a reference in date form"),
        Case("pub-domain", PUBLIC, "Nyt domæne til hjemmesiden",
             "Vi flytter hjemmesiden til et nyt domæne i næste uge. Dommen over det gamle design er "
             "klar: det skal moderniseres. Kontakt webmaster ved spørgsmål.", note="'dom' inside other words"),
        Case("pub-court-news", PUBLIC, "Nyhed: Højesteret afsiger principiel dom om ophavsret",
             "Højesteret har i dag afsagt dom i en principiel sag om ophavsret til software. "
             "Læs vores kommentar til afgørelsen på hjemmesiden.", note="one criminal-lexicon word"),
        Case("pub-it-maintenance", PUBLIC, "Planlagt vedligeholdelse af servere",
             "Søndag kl. 02-06 opdaterer vi serverne srv-0101901234 og srv-0202021111. "
             "Serienr. 1203881234 udskiftes. Der kan være nedetid på intranettet."),
        Case("pub-english-newsletter", PUBLIC, "Quarterly newsletter: health and safety week",
             "Dear colleagues,\n\nHealth and safety week starts on Monday. Join the fire drill on "
             "Tuesday and the ergonomics workshop on Thursday.\n\nBest regards,\nFacilities",
             sender="facilities@firm.example.com"),
        Case("pub-html-newsletter", PUBLIC, "Kommunens nyhedsbrev",
             "<html><body><h1>Nyt fra kommunen</h1><p>Vejarbejde på Hovedgaden fra 1. april.</p>"
             "<p>Biblioteket holder <b>åbent hus</b> lørdag.</p><img src='cid:logo'></body></html>",
             html=True),
        Case("pub-agenda-pdf", PUBLIC, "Dagsorden byrådsmøde",
             "Vedhæftet dagsorden til byrådets møde.",
             attachments=(Attachment("dagsorden.pdf", make_pdf(
                 "Dagsorden byrådsmøde 18. marts 2026\n1. Godkendelse af referat\n"
                 "2. Budgetopfølgning\n3. Lokalplan 1204 for Havnearealet")),)),
        Case("pub-pricelist-xlsx", PUBLIC, "Prisliste 2026",
             "Hermed vores prisliste for 2026.",
             attachments=(Attachment("prisliste.xlsx", make_xlsx(
                 [["Varenr", "Beskrivelse", "Pris"], ["1012881234", "Kontorstol", "1995"],
                  ["2203771234", "Skrivebord", "3495"]])),), note="item numbers in a spreadsheet"),
        Case("pub-zip-docs", PUBLIC, "Udbudsmateriale",
             "Udbudsmaterialet ligger i den vedhæftede zip-fil.",
             attachments=(Attachment("udbud.zip", make_zip({
                 "kravspec.docx": make_docx("Kravspecifikation\nLeverandøren skal levere 40 pc'er."),
                 "tidsplan.txt": b"Tilbudsfrist 1. maj 2026 kl. 12.00",
             })),)),
        Case("pub-iban-invalid", PUBLIC, "Betalingsoplysninger til arrangementet",
             "Deltagergebyr 250 kr. Indbetales til DK00 1234 5678 9012 34 senest 1. april.",
             note="IBAN-shaped but fails mod-97"),
        Case("pub-card-invalid", PUBLIC, "Kundenummer",
             "Dit kundekort har nummer 4111 1111 1111 1112. Vis det ved kassen.",
             note="card-shaped but fails Luhn"),
        Case("pub-tracking", PUBLIC, "Din pakke er på vej",
             "Pakkenummer 00370726201234567890. Track & trace: 0101901234567. "
             "Forventet levering i morgen."),
        Case("pub-union-event", PUBLIC, "Fredagsbar",
             "Der er fredagsbar kl. 15 i kantinen. Tag gerne en kollega med!"),
        Case("pub-legal-english", PUBLIC, "Contract draft for review",
             "Please find below our comments to clause 7 (limitation of liability) and clause 12 "
             "(governing law). We propose Danish law and the Copenhagen City Court as venue.",
             sender="lawyer@firm.example.com"),
        Case("pub-pptx", PUBLIC, "Slides fra temadagen",
             "Slides vedhæftet.",
             attachments=(Attachment("temadag.pptx", make_pptx(
                 ["Digitalisering i kommunen\nStrategi 2026-2030", "Mål\nFlere digitale selvbetjeninger"])),)),
        Case("pub-odt", PUBLIC, "Referat fra bestyrelsesmøde",
             "Referatet er vedhæftet.",
             attachments=(Attachment("referat.odt", make_odt(
                 "Referat\nBestyrelsen godkendte årsregnskabet.\nNæste møde 14. juni.")),)),
        Case("pub-stress-hospital", PUBLIC, "Parkering ved hospitalet",
             "Vi mødes ved hovedindgangen til hospitalet. Parkering er lidt af en stress-faktor, "
             "så tag gerne bussen.", note="two generic health words"),
        Case("pub-rtf", PUBLIC, "Standardbrev",
             "Vedhæftet skabelon.",
             attachments=(Attachment("skabelon.rtf", make_rtf(
                 "Kære [navn]\nTak for din henvendelse. Vi vender tilbage hurtigst muligt.")),)),
        Case("pub-csv", PUBLIC, "Tilmeldinger",
             "Liste over tilmeldte.",
             attachments=(Attachment("tilmeldte.csv", "Navn;Afdeling;Tilmeldt\nLise;IT;ja\n"
                                     "Peter;Økonomi;nej\n".encode()),)),
        Case("pub-long-digits", PUBLIC, "Bankoverførsel kvittering",
             "Transaktions-id 202603020930151234 er gennemført. Referencenummer 01019012345678.",
             note="long digit runs"),
    ]


def _confidential() -> list[Case]:
    return [
        Case("conf-cpr-body", CONFIDENTIAL, "Vedr. din ansøgning",
             f"Kære Jens Hansen\n\nVi har modtaget din ansøgning om parkeringstilladelse. "
             f"Dit CPR-nr. {CPR_PLAIN} er registreret på sagen.\n\nVenlig hilsen\nBorgerservice"),
        Case("conf-cpr-bare-context", CONFIDENTIAL, "Oplysninger til lønsystemet",
             f"Ny medarbejder: Mette Sørensen, personnummer {CPR_MOD11.replace('-', '')}, starter 1. april."),
        Case("conf-cpr-2005", CONFIDENTIAL, "Tilmelding til skole",
             f"Barnets navn: Emil\nCPR {CPR_2005}\nKlasse: 0.B", note="born 2005, no modulus 11"),
        Case("conf-cpr-xlsx", CONFIDENTIAL, "Deltagerliste",
             "Her er listen til kurset.",
             attachments=(Attachment("deltagere.xlsx", make_xlsx(
                 [["Navn", "CPR"], ["Jens", CPR_PLAIN], ["Mette", CPR_MOD11]])),)),
        Case("conf-cpr-xlsx-numbers", CONFIDENTIAL, "Udbetalingsliste",
             "Listen over udbetalinger til godkendelse.",
             attachments=(Attachment("udbetalinger.xlsx", make_xlsx(
                 [["Modtager", "Personnr", "Beløb"], ["Jens Hansen", 101901234, 2500],
                  ["Anne Holm", 707614285, 1800]], number_formats={1: "000000-0000"})),),
             note="CPR numbers typed into Excel: stored as numbers without the leading 0"),
        Case("conf-cpr-odt", CONFIDENTIAL, "Brev til borger",
             "Udkast vedhæftet.",
             attachments=(Attachment("brev.odt", make_odt(f"Til Jens Hansen, {CPR_MOD11}\nVi har behandlet din ansøgning.")),)),
        Case("conf-cpr-rtf", CONFIDENTIAL, "Fuldmagt",
             "Fuldmagten i udfyldt stand.",
             attachments=(Attachment("fuldmagt.rtf", make_rtf(f"Fuldmagt\nUndertegnede, cpr.nr. {CPR_PLAIN}, giver hermed fuldmagt.")),)),
        Case("conf-cpr-pptx", CONFIDENTIAL, "Sagsgennemgang",
             "Slides til mødet.",
             attachments=(Attachment("sag.pptx", make_pptx([f"Sag 14\nPart: {CPR_MOD11}"])),)),
        Case("conf-cpr-csv", CONFIDENTIAL, "Eksport fra systemet",
             "Eksporten vedhæftet.",
             attachments=(Attachment("eksport.csv", f"navn;cpr\nJens;{CPR_PLAIN}\n".encode()),)),
        Case("conf-cpr-filename", CONFIDENTIAL, "Dokument",
             "Se vedhæftede.",
             attachments=(Attachment(f"{CPR_PLAIN} ansøgning.pdf", make_pdf("Ansøgning om tilskud")),),
             note="CPR only in the file name"),
        Case("conf-payslip-pdf", CONFIDENTIAL, "Lønseddel marts",
             "Din lønseddel for marts er vedhæftet.",
             attachments=(Attachment("loenseddel.pdf", make_pdf(
                 "Lønseddel marts 2026\nBruttoindkomst 42.500 kr.\nAM-bidrag 3.400 kr.\nA-skat 12.100 kr.")),)),
        Case("conf-debt", CONFIDENTIAL, "Restance og inkasso",
             "Kære Peter\n\nDu har en restance på 14.300 kr. Hvis beløbet ikke betales inden 14 dage, "
             "overdrages sagen til inkasso. Kontakt os om en afdragsordning på din gæld."),
        Case("conf-iban", CONFIDENTIAL, "Udbetaling af erstatning",
             "Erstatningen udbetales til klientens konto IBAN DK50 0040 0440 1162 43 i næste uge.",
             sender="advokat@advokatfirma.example.dk"),
        Case("conf-card", CONFIDENTIAL, "Betaling af depositum",
             "Betalingen med kort 4111 1111 1111 1111 (udløb 04/28) er desværre afvist."),
        Case("conf-reg-konto", CONFIDENTIAL, "Bankoplysninger til udbetaling",
             "Udbetalingen sker til reg.nr. 1551 kontonr. 3253200123 i Danske Bank."),
        Case("conf-social-case", CONFIDENTIAL, "Underretning vedr. familien",
             "Vi har modtaget en underretning fra skolen vedrørende familiens to børn. "
             "Sagsbehandleren indkalder forældrene til møde om en mulig anbringelse."),
        Case("conf-hr-warning", CONFIDENTIAL, "Skriftlig advarsel",
             "Kære Henrik\n\nSom drøftet ved den tjenstlige samtale i går tildeles du hermed en "
             "skriftlig advarsel for gentagne udeblivelser.\n\nHR"),
        Case("conf-hr-english", CONFIDENTIAL, "Disciplinary meeting outcome",
             "Following the disciplinary meeting on Monday, we confirm that a written warning has "
             "been issued and placed on your personnel file.", sender="hr@firm.example.com"),
        Case("conf-divorce", CONFIDENTIAL, "Bodeling",
             "Vedr. skilsmisse og bodeling: klienten ønsker at beholde boligen, og forældremyndighed "
             "over børnene skal fortsat være fælles.", sender="advokat@advokatfirma.example.dk"),
        Case("conf-marking-subject", CONFIDENTIAL, "[fortrolig] Udkast til forlig",
             "Hej, vedhæftet udkast. Send ikke videre.", note="sender's marking only"),
        Case("conf-sensitivity-header", CONFIDENTIAL, "Strategi",
             "Notat om strategien for næste år.", headers={"Sensitivity": "Company-Confidential"}),
        Case("conf-encrypted-zip", CONFIDENTIAL, "Dokumenter",
             "Koden sendes separat på sms.",
             attachments=(Attachment("dokumenter.zip", make_zip({"sag.txt": b"hemmeligt"}, encrypted=True)),),
             note="unscannable: flag bit only (a damaged or odd archive that claims encryption)"),
        Case("conf-zipcrypto-zip", CONFIDENTIAL, "Lønsedler",
             "Lønsedlerne ligger i den krypterede zip-fil; adgangskoden sender jeg på SMS.",
             attachments=(Attachment("loensedler.zip", make_zipcrypto_zip(
                 {"loenseddel-marts.txt": b"Udbetalt: 32.150 kr.", "noter.txt": b"se vedlagte"},
                 "Forår2026".encode())),),
             note="unscannable: ZipCrypto-encrypted members (zip -e, Windows Explorer)"),
        Case("conf-aes-zip", CONFIDENTIAL, "Journal",
             "Journalen er vedhæftet som AES-krypteret arkiv.",
             attachments=(Attachment("journal.zip", make_aes_zip(
                 {"journal.txt": b"Notat fra samtalen"}, "Forår2026".encode())),),
             note="unscannable: AES-256 encrypted members (7-Zip, WinZip)"),
        Case("conf-encrypted-pdf", CONFIDENTIAL, "Årsopgørelse",
             "Den krypterede fil er vedhæftet.",
             attachments=(Attachment("dokument.pdf", make_pdf("Årsopgørelse", password="1234")),),
             note="unscannable: encrypted PDF"),
        Case("conf-unknown-binary", CONFIDENTIAL, "Data",
             "Datafil vedhæftet.",
             attachments=(Attachment("data.bin", bytes(range(256)) * 8),), note="unscannable binary"),
        Case("conf-english-salary", CONFIDENTIAL, "Your payslip and tax return",
             "Attached are your payslip for March and the tax return summary. Please check the "
             "bank statement reference.", sender="payroll@firm.example.com"),
        Case("conf-cpr-nested-zip", CONFIDENTIAL, "Bilag",
             "Bilag til sagen.",
             attachments=(Attachment("bilag.zip", make_zip({
                 "indre.zip": make_zip({"liste.docx": make_docx(f"Parter\nCPR {CPR_MOD11}")}),
             })),), note="CPR two archives deep"),
    ]


def _sensitive() -> list[Case]:
    return [
        Case("sens-sick-leave", SENSITIVE, "Sygemelding",
             "Hej Lone\n\nJeg er sygemeldt resten af ugen. Lægen har givet mig diagnosen "
             "stress og depression, og jeg skal starte hos en psykolog.\n\nMvh Tina"),
        Case("sens-journal-pdf", SENSITIVE, "Journaludskrift",
             "Som aftalt journaludskriften.",
             attachments=(Attachment("journal.pdf", make_pdf(
                 f"Patientjournal\nCPR {CPR_MOD11}\nDiagnose: Type 2 diabetes\nBehandling: Metformin")),)),
        Case("sens-psychiatry-docx", SENSITIVE, "Udtalelse fra psykiatrien",
             "Udtalelsen er vedhæftet.",
             attachments=(Attachment("udtalelse.docx", make_docx(
                 "Udtalelse\nBorgeren har været indlagt på psykiatrisk afdeling og er diagnosticeret "
                 "med bipolar lidelse.")),)),
        Case("sens-criminal-record", SENSITIVE, "Straffeattest",
             "Vi har modtaget din straffeattest. Den indeholder en betinget dom fra 2021, som vi "
             "skal drøfte inden ansættelsen."),
        Case("sens-charge", SENSITIVE, "Anklageskrift i sagen",
             "Anklagemyndigheden har udsendt anklageskrift. Klienten er tiltalt for overtrædelse af "
             "straffelovens § 244 (vold).", sender="advokat@advokatfirma.example.dk"),
        Case("sens-union", SENSITIVE, "Fagforeningskontingent",
             "Lønkontoret trækker fremover kontingent til din fagforening. Vi har noteret, at du er "
             "fagligt medlem af HK."),
        Case("sens-religion", SENSITIVE, "Fritagelse for undervisning",
             "Forældrene ønsker eleven fritaget fra kristendomsundervisning på grund af familiens "
             "religiøse overbevisning; familien er muslimsk."),
        Case("sens-orientation", SENSITIVE, "Samtale med medarbejder",
             "Medarbejderen har fortalt om sin seksuelle orientering og ønsker, at oplysningen ikke "
             "deles med teamet."),
        Case("sens-english-medical", SENSITIVE, "Medical report",
             "Dear Dr. Smith,\n\nThe patient was diagnosed with epilepsy in 2019 and is currently on "
             "medication. Please see the attached medical record.", sender="clinic@example.com"),
        Case("sens-english-criminal", SENSITIVE, "Background check result",
             "The background check shows a criminal record: the candidate was convicted of fraud "
             "in 2018 and sentenced to 6 months.", sender="screening@example.com"),
        Case("sens-pregnancy", SENSITIVE, "Graviditet og orlov",
             "Jeg vil gerne fortælle, at jeg er gravid og skal have lægeerklæring om graviditetsgener."),
        Case("sens-genetic", SENSITIVE, "Resultat af gentest",
             "Resultatet af gentesten viser arveanlæg for brystkræft."),
        Case("sens-biometric", SENSITIVE, "Adgangskontrol",
             "Det nye adgangssystem bruger biometri (fingeraftryk) til at identificere medarbejderne."),
        Case("sens-ethnic", SENSITIVE, "Statistik",
             "Skemaet registrerer ansøgerens etniske oprindelse og race."),
        Case("sens-political", SENSITIVE, "Medlemskab",
             "Borgeren oplyser sin politiske overbevisning og at hun er partimedlem."),
        Case("sens-marking", SENSITIVE, "[følsom] Notat til mødet", "Se notat.",
             note="sender's marking only"),
        Case("sens-zip-pdf", SENSITIVE, "Dokumentation",
             "Al dokumentation i zip-filen.",
             attachments=(Attachment("dokumentation.zip", make_zip({
                 "laegeerklaering.pdf": make_pdf("Lægeerklæring\nPatienten er sygemeldt pga. kræft "
                                                 "og modtager kemoterapi."),
             })),)),
        Case("sens-html", SENSITIVE, "Opfølgning efter indlæggelse",
             "<html><body><p>Kære pårørende</p><p>Efter indlæggelsen på psykiatrisk afdeling er "
             "<b>medicineringen</b> ændret. Diagnosen er uændret.</p></body></html>", html=True),
        Case("sens-latin1", SENSITIVE, "Sygemelding og misbrug",
             "Medarbejderen er sygemeldt og i behandling for alkoholmisbrug.", charset="iso-8859-1"),
        Case("sens-varetaegt", SENSITIVE, "Retsmøde",
             "Klienten er fortsat varetægtsfængslet; grundlovsforhøret udsatte sagen. Sigtelsen "
             "lyder på tyveri.", sender="forsvarer@advokatfirma.example.dk"),
        Case("sens-handicap", SENSITIVE, "Ansøgning om hjælpemidler",
             "Borgeren har en funktionsnedsættelse efter en hjerneblødning og genoptræning er "
             "bevilget.", note="health words of weight 2"),
    ]


def _held_out() -> list[Case]:
    """Written after the detectors were tuned on the cases above, and not tuned on."""
    return [
        Case("held-pub-tender", PUBLIC, "Spørgsmål til udbuddet",
             "Spørgsmål 3: Kan tilbudsgiver anvende underleverandører? Svar: Ja, jf. udbudsbetingelsernes "
             "afsnit 4.2. Fristen for spørgsmål er 20.03.2026 kl. 12.00."),
        Case("held-pub-english-invoice", PUBLIC, "Invoice 2026-0412",
             "Please find invoice no. 1204261234 attached for consultancy services in March. "
             "Payment terms: 30 days net. Thank you for your business."),
        Case("held-pub-sports", PUBLIC, "Firmaidræt",
             "Husk firmaidræt torsdag. Vi spiller badminton i hallen, og der er plads til fem mere."),
        Case("held-pub-library", PUBLIC, "Bibliotekets åbningstider",
             "Biblioteket har nye åbningstider fra 1. maj: mandag-fredag 10-19, lørdag 10-14. "
             "Selvbetjening 7-22 med sundhedskort.", note="'sundhedskort' used as library card"),
        Case("held-conf-tax", CONFIDENTIAL, "Din forskudsopgørelse",
             "Vi har ændret din forskudsopgørelse, da din indkomst er steget. Den nye skatteprocent "
             "gælder fra næste lønudbetaling."),
        Case("held-conf-cpr-table", CONFIDENTIAL, "Holdliste",
             "Navn\tFødselsdato/CPR\nAnna Jensen\t120394-1122\nBo Nielsen\t230587-3345"),
        Case("held-conf-flexjob", CONFIDENTIAL, "Jobafklaringsforløb",
             "Kommunen har bevilget et jobafklaringsforløb, og din sag om fleksjob behandles på næste "
             "møde i rehabiliteringsteamet."),
        Case("held-conf-english-cpr", CONFIDENTIAL, "New starter details",
             "Please register our new starter, Danish civil registration number 150292-2211, in "
             "the payroll system before Friday.", sender="hr@firm.example.com"),
        Case("held-sens-alcohol", SENSITIVE, "Fravær",
             "Medarbejderen har oplyst, at fraværet skyldes behandling for alkoholmisbrug på et "
             "ambulatorium."),
        Case("held-sens-police-report", SENSITIVE, "Politirapport",
             "Vedlagt politirapport. Klienten blev anholdt den 3. marts og er sigtet for "
             "narkotikabesiddelse.", sender="advokat@advokatfirma.example.dk"),
        Case("held-sens-english-therapy", SENSITIVE, "Therapy sessions",
             "Your employee has attended six therapy sessions for anxiety and depression; a doctor's "
             "note confirming the sick leave is attached.", sender="clinic@example.com"),
        Case("held-sens-disability-docx", SENSITIVE, "Ansøgning om merudgifter",
             "Ansøgningen vedhæftet.",
             attachments=(Attachment("ansoegning.docx", make_docx(
                 "Ansøgning om dækning af merudgifter\nBarnet har autisme og ADHD og har brug for "
                 "særlig støtte.")),)),
    ]


@cache
def corpus() -> tuple[Case, ...]:
    return tuple(_public() + _confidential() + _sensitive() + _held_out())
