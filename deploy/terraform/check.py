#!/usr/bin/env python3
"""Offline checks of Keel's Terraform (deploy/terraform), run by deploy/local/bin/terraform-check.sh.

1. Every .tf file parses (python-hcl2).
2. Names: every Keel name comes from keel-names.json (generated from the code), never spelled out:
   no .tf or .tftpl file holds a topic, a routing control or safety rule expanded for the regions
   below, the runbook table, a binary, an environment variable of keel-names.json, or any other
   KEEL_* variable than the entrypoint's (keel-names.json environment.files); application, service, control
   panel and gate names do not appear as quoted strings; and every module that names Keel things
   reads keel-names.json (a `keel_names_file` variable given to file(), or the file's name); no
   container port is written as a value (they are keel-names.json's container_ports).
3. Layout and secrets: each module and environment keeps its variables in variables.tf and its
   outputs in outputs.tf, and no file holds anything that looks like a secret (AWS access key ids,
   private keys, a password or secret given as a literal string).
4. Suppressed checkov findings: every inline `#checkov:skip=CKV_...:reason` gives a reason, and
   README.md's "Checker findings" section names each skipped check.

Prints a short summary; exits 1 naming every failure.
"""

import json
import re
import sys
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parent
NAMES_FILE = ROOT / "keel-names.json"

# The regions the routing-control and rule patterns are expanded over when looking for copies.
REGIONS = ["us-east-1", "us-west-2"]

# Resource types whose names or contents are Keel names: a module holding one must read
# keel-names.json.
KEEL_NAMED_RESOURCES = {
    "aws_route53recoverycontrolconfig_control_panel",
    "aws_route53recoverycontrolconfig_routing_control",
    "aws_route53recoverycontrolconfig_safety_rule",
    "aws_dynamodb_table",
    "aws_ecs_task_definition",
    "aws_ecs_service",
    "aws_route53_health_check",
}

failures = []


def fail(message):
    failures.append(message)


def rel(path):
    return str(path.relative_to(ROOT))


def unquote(label):
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def tf_files():
    return sorted(p for p in ROOT.rglob("*.tf") if ".terraform" not in p.parts)


def template_files():
    return sorted(p for p in ROOT.rglob("*.tftpl") if ".terraform" not in p.parts)


def expand(pattern, **values):
    for key, value in values.items():
        pattern = pattern.replace("{" + key + "}", value)
    return pattern


def keel_names(names):
    """(names that may appear nowhere, names that may not appear as a quoted string)."""
    routing = names["routing"]
    apps = [a["name"] for a in names["applications"]]
    gates = routing["gates"]
    anywhere = set()
    anywhere.update(t["name"] for t in names["topics"])
    anywhere.update(s["binary"] for s in names["services"])
    anywhere.add(names["runbook_store"]["table"])
    for app in apps:
        for region in REGIONS:
            anywhere.add(expand(routing["traffic_needs_processing_rule"], application=app, region=region))
            for gate in gates:
                anywhere.add(expand(routing["control"], application=app, region=region, gate=gate))
        for gate in gates:
            anywhere.add(expand(routing["one_region_rule"], application=app, gate=gate))
    env = names["environment"]
    anywhere.update(env["every_process"])
    anywhere.update(env["ops"])
    anywhere.add(env["api_listen"])
    anywhere.add(env["console_listen"])
    anywhere.update(s["name"] for s in env["secrets"])
    quoted = set(apps)
    quoted.update(s["name"] for s in names["services"])
    quoted.update(a["control_panel"] for a in names["applications"])
    quoted.add(routing["generator_control"])
    quoted.add(routing["generator_control_panel"])
    quoted.update(gates)
    return anywhere, quoted


def check_parse():
    parsed = {}
    for path in tf_files():
        try:
            with path.open() as handle:
                parsed[path] = hcl2.load(handle)
        except Exception as error:  # noqa: BLE001 - any parser error is the finding
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            fail(f"{rel(path)}: does not parse as HCL: {first}")
    return parsed


def check_names(names, parsed):
    anywhere, quoted = keel_names(names)
    # The entrypoint's variables (deploy/docker/entrypoint.sh writes each into a file): the only
    # KEEL_* names a .tf file may spell out.
    allowed_keel_vars = {f["variable"] for f in names["environment"]["files"]}
    ports = sorted({str(p) for p in names["container_ports"].values()})
    for path in tf_files() + template_files():
        text = path.read_text()
        # A container port written as a value (`= 9100`, `:9100"`), outside comments.
        for number, code in enumerate(text.splitlines(), start=1):
            code = code.split("#", 1)[0]
            for port in ports:
                if re.search(r"(=\s*|:)" + port + r"(?![0-9])", code):
                    fail(f"{rel(path)}:{number}: spells out the container port {port}: take it from keel-names.json (container_ports)")
        for name in sorted(anywhere):
            pattern = r"(?<![A-Za-z0-9_.\-])" + re.escape(name) + r"(?![A-Za-z0-9_\-])"
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                fail(f"{rel(path)}:{line}: spells out the Keel name {name!r}: take it from keel-names.json")
        for name in sorted(quoted):
            for match in re.finditer(re.escape(f'"{name}"'), text):
                line = text.count("\n", 0, match.start()) + 1
                fail(f"{rel(path)}:{line}: spells out the Keel name \"{name}\" as a string: take it from keel-names.json")
        for match in re.finditer(r"\bKEEL_[A-Z0-9_]+\b", text):
            if match.group(0) not in allowed_keel_vars and match.group(0) not in anywhere:
                line = text.count("\n", 0, match.start()) + 1
                fail(f"{rel(path)}:{line}: {match.group(0)} is neither in keel-names.json nor one of the entrypoint's variables (keel-names.json environment.files)")

    # Every folder that names Keel things reads keel-names.json.
    folders = {}
    for path, doc in parsed.items():
        folders.setdefault(path.parent, []).append((path, doc))
    declares_names_file = set()
    for folder, docs in folders.items():
        for _, doc in docs:
            for variable in doc.get("variable", []):
                if "keel_names_file" in map(unquote, variable):
                    declares_names_file.add(folder)
    for folder, docs in sorted(folders.items()):
        text = "\n".join(path.read_text() for path, _ in docs)
        types = {unquote(t) for _, doc in docs for block in doc.get("resource", []) for t in block}
        names_keel = bool(types & KEEL_NAMED_RESOURCES) or "local.names" in text
        if not names_keel:
            continue
        reads = "keel-names.json" in text or (
            folder in declares_names_file and re.search(r"jsondecode\(\s*file\(\s*var\.keel_names_file\s*\)\s*\)", text)
        )
        if not reads:
            fail(f"{rel(folder)}: names Keel things ({', '.join(sorted(types & KEEL_NAMED_RESOURCES)) or 'local.names'}) but does not read keel-names.json (jsondecode(file(var.keel_names_file)))")
        # A module call to a module that takes keel_names_file must give it.
        for path, doc in docs:
            for call in doc.get("module", []):
                for label, body in call.items():
                    source = unquote(str(body.get("source", "")))
                    target = (folder / source).resolve()
                    if target in declares_names_file and "keel_names_file" not in body:
                        fail(f"{rel(path)}: module {unquote(label)} ({source}) is not given keel_names_file")


SECRET_PATTERNS = [
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (
        re.compile(
            r'^\s*"?[A-Za-z0-9_]*(password|passwd|secret|token)[A-Za-z0-9_]*"?\s*=\s*"(?!\$\{)([^"]+)"',
            re.IGNORECASE | re.MULTILINE,
        ),
        "a literal password, secret or token",
    ),
]


def check_layout_and_secrets(parsed):
    folders = {}
    for path, doc in parsed.items():
        folders.setdefault(path.parent, []).append((path, doc))
    for folder, docs in sorted(folders.items()):
        in_module_or_env = folder.parent.name in ("modules", "environments")
        for path, doc in docs:
            if doc.get("variable") and path.name != "variables.tf":
                fail(f"{rel(path)}: declares variables outside variables.tf")
            if doc.get("output") and path.name != "outputs.tf":
                fail(f"{rel(path)}: declares outputs outside outputs.tf")
        if in_module_or_env:
            for required in ("variables.tf", "outputs.tf"):
                if not (folder / required).exists():
                    fail(f"{rel(folder)}: has no {required}")
    scanned = tf_files() + template_files() + sorted(ROOT.rglob("*.tfvars*")) + sorted(ROOT.rglob("*.hcl*"))
    for path in scanned:
        if ".terraform" in path.parts or path.is_dir():
            continue
        text = path.read_text()
        for pattern, what in SECRET_PATTERNS:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                fail(f"{rel(path)}:{line}: looks like {what}")


SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def check_skips():
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    section = text.split("## Checker findings", 1)[1] if "## Checker findings" in text else ""
    if not section:
        fail("README.md: has no '## Checker findings' section listing the suppressed checkov findings")
    count = 0
    for path in tf_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = SKIP.search(line)
            if not match:
                continue
            count += 1
            check, reason = match.group(1), (match.group(2) or "").strip()
            if len(reason) < 15:
                fail(f"{rel(path)}:{number}: skips {check} without a reason (#checkov:skip={check}:<why>)")
            if section and check not in section:
                fail(f"{rel(path)}:{number}: skips {check}, which README.md's Checker findings does not list")
    return count


def main():
    try:
        names = json.loads(NAMES_FILE.read_text())
    except (OSError, ValueError) as error:
        print(f"terraform check: cannot read {NAMES_FILE}: {error}", file=sys.stderr)
        return 1
    parsed = check_parse()
    check_names(names, parsed)
    check_layout_and_secrets(parsed)
    skips = check_skips()
    folders = sorted({rel(p.parent) for p in parsed})
    print(
        f"terraform check: {len(parsed)} .tf files parsed, {len(template_files())} templates, "
        f"{len(folders)} folders, {skips} checkov skips with reasons"
    )
    if failures:
        for message in failures:
            print(f"  FAIL {message}", file=sys.stderr)
        print(f"terraform check: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("terraform check: names from keel-names.json, layout and secrets: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
