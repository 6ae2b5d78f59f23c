"""Open Job Description samples written for these tests, one per feature, in the shapes
published samples use (a bundle directory, environment templates, stand-in tools)."""

from __future__ import annotations

import json
from pathlib import Path

#: EXPR + FEATURE_BUNDLE_1: a step ``let``, typed BOOL/LIST parameters, a list argument
#: that becomes one argument per item, the ``bash:`` shorthand and a format-string timeout
EXPRESSIONS = """\
specificationVersion: jobtemplate-2023-09
extensions: [EXPR, FEATURE_BUNDLE_1]
name: "Turntable {{Param.Shots}}"
parameterDefinitions:
- name: Shots
  type: INT
  default: 3
- name: Preview
  type: BOOL
  default: false
- name: Passes
  type: "LIST[STRING]"
  default: ["beauty", "depth map"]
- name: OutDir
  type: PATH
steps:
- name: Spin
  let: ["degrees = 360 // Param.Shots"]
  parameterSpace:
    taskParameterDefinitions:
    - name: Shot
      type: INT
      range: "1-{{Param.Shots}}"
  bash:
    timeout: "{{Param.Shots * 20}}"
    args: ["{{Param.Passes}}"]
    script: |
      printf 'shot=%s angle=%s preview=%s argc=%s a1=%s a2=%s step=%s\\n' \\
        {{Task.Param.Shot}} {{Task.Param.Shot * degrees}} {{Param.Preview}} $# "$1" "$2" {{upper(Step.Name)}} \\
        > "{{Param.OutDir}}/shot-{{Task.Param.Shot}}.txt"
"""

#: one environment whose onEnter sets variables in both ``openjd_env`` forms, unsets
#: one, sets a redacted one, and reports on its exit what the task saw
SESSION_ENV = """\
specificationVersion: jobtemplate-2023-09
extensions: [REDACTED_ENV_VARS]
name: Session variables
parameterDefinitions:
- name: OutDir
  type: PATH
- name: SecretFile
  type: PATH
jobEnvironments:
- name: Toolchain
  variables:
    DROP_ME: "present"
  script:
    actions:
      onEnter:
        command: python3
        args:
        - "-c"
        - |
          import json
          print("openjd_env: PLAIN=a=b c")
          print("openjd_env: " + json.dumps("QUOTED=line one\\tand \\"two\\""))
          print("openjd_unset_env: DROP_ME")
          key = open("{{Param.SecretFile}}").read().strip()  # as from a secrets manager
          print("openjd_redacted_env: LICENSE_KEY=" + key)
          print("entered with key " + key)
      onExit:
        command: /bin/sh
        args: ["-c", "echo exit PLAIN=$PLAIN > '{{Param.OutDir}}/exit.txt'"]
steps:
- name: Show
  script:
    actions:
      onRun:
        command: python3
        args:
        - "-c"
        - |
          import json, os
          seen = {k: os.environ.get(k) for k in ("PLAIN", "QUOTED", "DROP_ME", "LICENSE_KEY")}
          open("{{Param.OutDir}}/env.json", "w").write(json.dumps(seen))
          print("task sees key", os.environ.get("LICENSE_KEY"))
"""

#: progress, status and fail lines from tasks; frame 2 fails with its own message
MESSAGES = """\
specificationVersion: jobtemplate-2023-09
name: Talkative
steps:
- name: Work
  parameterSpace:
    taskParameterDefinitions:
    - name: Frame
      type: INT
      range: "1-3"
  script:
    actions:
      onRun:
        command: /bin/sh
        args:
        - "-c"
        - |
          echo "openjd_progress: 25"
          echo "openjd_status: loading frame {{Task.Param.Frame}}"
          echo "openjd_progress: 80.5"
          echo "openjd_status: writing frame {{Task.Param.Frame}}"
          if [ {{Task.Param.Frame}} -eq 2 ]; then
            echo "openjd_fail: licence server unreachable for frame 2"
            exit 4
          fi
          if [ {{Task.Param.Frame}} -eq 3 ]; then
            echo "openjd_status: said on stderr" >&2
          fi
"""

#: a session directory that tasks write into and a script that records its own path
SESSION_DIR = """\
specificationVersion: jobtemplate-2023-09
name: Scratch
parameterDefinitions:
- name: OutDir
  type: PATH
steps:
- name: Scratch
  parameterSpace:
    taskParameterDefinitions:
    - name: N
      type: INT
      range: "1-2"
  script:
    actions:
      onRun:
        command: /bin/sh
        args:
        - "-c"
        - |
          echo scratch > scratch.bin
          echo "{{Session.WorkingDirectory}}" > "{{Param.OutDir}}/dir-{{Task.Param.N}}.txt"
          cp "{{Session.PathMappingRulesFile}}" "{{Param.OutDir}}/rules-{{Task.Param.N}}.json"
"""

#: a queue-style environment template: a parameter of its own, a variable, and an
#: onEnter that leaves a marker in the session (a stand-in for activating a venv)
QUEUE_ENV = """\
specificationVersion: environment-2023-09
parameterDefinitions:
- name: ToolVersion
  type: STRING
  default: "4.2"
- name: OutDir  # shared with the job's own definition (openjd-model merges the two)
  type: PATH
environment:
  name: StudioTools
  variables:
    STUDIO_TOOLS: "tools-{{Param.ToolVersion}}"
  script:
    actions:
      onEnter:
        command: /bin/sh
        args: ["-c", "echo 'openjd_env: TOOLS_ACTIVE=yes'; echo queue-enter >> '{{Param.OutDir}}/order.log'"]
      onExit:
        command: /bin/sh
        args: ["-c", "echo queue-exit >> '{{Param.OutDir}}/order.log'"]
"""

#: a job whose own environment must find the queue environment already entered
AFTER_QUEUE_ENV = """\
specificationVersion: jobtemplate-2023-09
name: Uses studio tools
parameterDefinitions:
- name: OutDir
  type: PATH
jobEnvironments:
- name: Shot
  script:
    actions:
      onEnter:
        command: /bin/sh
        args: ["-c", "echo job-enter tools=$TOOLS_ACTIVE >> '{{Param.OutDir}}/order.log'"]
      onExit:
        command: /bin/sh
        args: ["-c", "echo job-exit >> '{{Param.OutDir}}/order.log'"]
steps:
- name: Run
  script:
    actions:
      onRun:
        command: /bin/sh
        args: ["-c", "echo task $STUDIO_TOOLS $TOOLS_ACTIVE >> '{{Param.OutDir}}/order.log'"]
"""

#: a frame range where a few frames fail (for the failure defaults)
FRAMES = """\
specificationVersion: jobtemplate-2023-09
name: Frames {{Param.Frames}}
parameterDefinitions:
- name: Frames
  type: STRING
  default: "1-10"
- name: Bad
  type: STRING
  default: ",,"
steps:
- name: Render
  parameterSpace:
    taskParameterDefinitions:
    - name: Frame
      type: INT
      range: "{{Param.Frames}}"
  script:
    actions:
      onRun:
        command: /bin/sh
        args: ["-c", "case '{{Param.Bad}}' in *,{{Task.Param.Frame}},*) echo bad frame >&2; exit 2;; esac"]
"""


def write_bundle(root: Path, template: str, values: dict[str, object] | None = None) -> Path:
    """A bundle directory: template.yaml and, given values, parameter_values.json."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "template.yaml").write_text(template)
    if values:
        doc = {"parameterValues": [{"name": k, "value": v} for k, v in values.items()]}
        (root / "parameter_values.json").write_text(json.dumps(doc))
    return root
