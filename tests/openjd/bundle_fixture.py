"""A real OpenJD job bundle used by the openjd tests: a 1-20 frame range, a step
depending on another, a step environment with onEnter/onExit, one frame that fails on
purpose until an ``allow-<frame>`` file exists (so a retry of just that task succeeds)."""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """\
specificationVersion: jobtemplate-2023-09
name: Demo {{Param.Frames}}
parameterDefinitions:
- name: Frames
  type: STRING
  default: "1-20"
- name: FailFrame
  type: INT
  default: 7
  maxValue: 1000
- name: OutDir
  type: PATH
- name: Scale
  type: FLOAT
  default: 1.5
steps:
- name: Render
  stepEnvironments:
  - name: Setup
    variables:
      RENDER_QUALITY: high-{{Param.Scale}}
    script:
      actions:
        onEnter:
          command: /bin/sh
          args: ["-c", "echo 'openjd_env: RENDER_MODE=fast'; echo enter >> '{{Param.OutDir}}/env.log'"]
        onExit:
          command: /bin/sh
          args: ["-c", "echo exit >> '{{Param.OutDir}}/env.log'"]
  parameterSpace:
    taskParameterDefinitions:
    - name: Frame
      type: INT
      range: "{{Param.Frames}}"
  script:
    embeddedFiles:
    - name: render
      type: TEXT
      runnable: true
      data: |
        #!/bin/sh
        out='{{Param.OutDir}}'
        if [ {{Task.Param.Frame}} -eq {{Param.FailFrame}} ] && [ ! -e "$out/allow-{{Task.Param.Frame}}" ]; then
          echo "frame {{Task.Param.Frame}} failing on purpose" >&2
          exit 3
        fi
        echo "frame {{Task.Param.Frame}} mode=$RENDER_MODE quality=$RENDER_QUALITY" > "$out/frame-{{Task.Param.Frame}}.txt"
        echo "rendered frame {{Task.Param.Frame}}"
    actions:
      onRun:
        command: "{{Task.File.render}}"
        cancelation:
          mode: NOTIFY_THEN_TERMINATE
          notifyPeriodInSeconds: 5
- name: Assemble
  dependencies:
  - dependsOn: Render
  script:
    actions:
      onRun:
        command: /bin/sh
        args: ["-c", "ls '{{Param.OutDir}}' | grep -c '^frame-' > '{{Param.OutDir}}/count.txt'; echo assembled"]
"""


def make_bundle(root: Path, out_dir: Path, *, fail_frame: int = 7) -> Path:
    bundle = root / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "template.yaml").write_text(TEMPLATE)
    (bundle / "parameter_values.yaml").write_text(
        "parameterValues:\n"
        f"- {{name: OutDir, value: '{out_dir}'}}\n"
        f"- {{name: FailFrame, value: {fail_frame}}}\n"
        "- {name: 'deadline:priority', value: 65}\n"
        "- {name: 'Queue:Ignored', value: x}\n"
    )
    (bundle / "asset_references.yaml").write_text(
        "assetReferences:\n  inputs:\n    filenames: []\n    directories: []\n"
        f"  outputs:\n    directories: ['{out_dir}']\n"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    return bundle
