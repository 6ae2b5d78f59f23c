"""Farms, queues, fleets, workers, storage profiles and queue role credentials."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .records import ROLE_ARN, USER, Job, Step, Task, hexid, not_found, now, page


class Farms:
    farms: dict[str, dict[str, Any]]
    queues: dict[str, dict[str, Any]]
    fleets: dict[str, dict[str, Any]]
    workers: dict[str, dict[str, Any]]
    associations: list[tuple[str, str]]
    jobs: dict[str, Job]
    #: queue id -> what GetQueue adds to the queue's summary (jobAttachmentSettings,
    #: allowedStorageProfileIds)
    queue_settings: dict[str, dict[str, Any]]
    storage_profiles: dict[str, dict[str, Any]]

    # -- lookups ----------------------------------------------------------------
    def farm(self, farm_id: str) -> dict[str, Any]:
        if farm_id not in self.farms:
            raise not_found("farm", farm_id)
        return self.farms[farm_id]

    def queue(self, farm_id: str, queue_id: str) -> dict[str, Any]:
        self.farm(farm_id)
        q = self.queues.get(queue_id)
        if q is None or q["farmId"] != farm_id:
            raise not_found("queue", queue_id)
        return q

    def job(self, req: dict[str, Any]) -> Job:
        self.queue(req["farmId"], req["queueId"])
        job = self.jobs.get(req["jobId"])
        if job is None or job.queue_id != req["queueId"]:
            raise not_found("job", req["jobId"])
        return job

    def step(self, req: dict[str, Any]) -> Step:
        job = self.job(req)
        for s in job.steps:
            if s.step_id == req["stepId"]:
                return s
        raise not_found("step", req["stepId"])

    def task(self, req: dict[str, Any]) -> Task:
        for t in self.step(req).tasks:
            if t.task_id == req["taskId"]:
                return t
        raise not_found("task", req["taskId"])

    # -- farms, queues, fleets --------------------------------------------------
    def CreateFarm(self, req: dict[str, Any]) -> dict[str, Any]:
        farm_id = f"farm-{hexid()}"
        self.farms[farm_id] = {
            "farmId": farm_id,
            "displayName": req["displayName"],
            "createdAt": now(),
            "createdBy": USER,
        }
        return {"farmId": farm_id}

    def GetFarm(self, req: dict[str, Any]) -> dict[str, Any]:
        return {**self.farm(req["farmId"]), "costScaleFactor": 1.0}

    def ListFarms(self, req: dict[str, Any]) -> dict[str, Any]:
        items, extra = page(list(self.farms.values()), req)
        return {"farms": items, **extra}

    def CreateQueue(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        queue_id = f"queue-{hexid()}"
        self.queues[queue_id] = {
            "farmId": req["farmId"],
            "queueId": queue_id,
            "displayName": req["displayName"],
            "status": "IDLE",
            "defaultBudgetAction": "NONE",
            "createdAt": now(),
            "createdBy": USER,
        }
        self.queue_settings[queue_id] = {
            k: req[k] for k in ("jobAttachmentSettings", "allowedStorageProfileIds") if k in req
        }
        return {"queueId": queue_id}

    def GetQueue(self, req: dict[str, Any]) -> dict[str, Any]:
        queue = self.queue(req["farmId"], req["queueId"])
        return {**queue, **self.queue_settings.get(queue["queueId"], {}), "roleArn": ROLE_ARN}

    def UpdateQueue(self, req: dict[str, Any]) -> dict[str, Any]:
        queue = self.queue(req["farmId"], req["queueId"])
        settings = self.queue_settings.setdefault(queue["queueId"], {})
        if "displayName" in req:
            queue["displayName"] = req["displayName"]
        if "jobAttachmentSettings" in req:
            settings["jobAttachmentSettings"] = req["jobAttachmentSettings"]
        allowed = set(settings.get("allowedStorageProfileIds", []))
        for sp in req.get("allowedStorageProfileIdsToAdd", []):
            self.storage_profile(req["farmId"], sp)
            allowed.add(sp)
        allowed -= set(req.get("allowedStorageProfileIdsToRemove", []))
        settings["allowedStorageProfileIds"] = sorted(allowed)
        queue["updatedAt"] = now()
        queue["updatedBy"] = USER
        return {}

    def ListQueues(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        qs = [q for q in self.queues.values() if q["farmId"] == req["farmId"]]
        items, extra = page(qs, req)
        return {"queues": items, **extra}

    def add_fleet(self, farm_id: str, name: str, workers: int) -> str:
        fleet_id = f"fleet-{hexid()}"
        self.fleets[fleet_id] = {
            "fleetId": fleet_id,
            "farmId": farm_id,
            "displayName": name,
            "status": "ACTIVE",
            "workerCount": workers,
            "minWorkerCount": 0,
            "maxWorkerCount": workers,
            "configuration": {
                "customerManaged": {
                    "mode": "NO_SCALING",
                    "workerCapabilities": {
                        "vCpuCount": {"min": 1},
                        "memoryMiB": {"min": 512},
                        "osFamily": "LINUX",
                        "cpuArchitectureType": "x86_64",
                    },
                }
            },
            "createdAt": now(),
            "createdBy": USER,
        }
        for _ in range(workers):
            wid = f"worker-{hexid()}"
            self.workers[wid] = {
                "farmId": farm_id,
                "fleetId": fleet_id,
                "workerId": wid,
                "status": "IDLE",
                "createdAt": now(),
                "createdBy": USER,
            }
        return fleet_id

    def GetFleet(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        fleet = self.fleets.get(req["fleetId"])
        if fleet is None or fleet["farmId"] != req["farmId"]:
            raise not_found("fleet", req["fleetId"])
        return {**fleet, "roleArn": ROLE_ARN}

    def ListFleets(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        fs = [f for f in self.fleets.values() if f["farmId"] == req["farmId"]]
        items, extra = page(fs, req)
        return {"fleets": items, **extra}

    def ListQueueFleetAssociations(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        rows = [
            {
                "queueId": q,
                "fleetId": f,
                "status": "ACTIVE",
                "createdAt": self.queues[q]["createdAt"],
                "createdBy": USER,
            }
            for q, f in self.associations
            if self.queues[q]["farmId"] == req["farmId"]
            and req.get("queueId") in (None, q)
            and req.get("fleetId") in (None, f)
        ]
        items, extra = page(rows, req)
        return {"queueFleetAssociations": items, **extra}

    def ListWorkers(self, req: dict[str, Any]) -> dict[str, Any]:
        self.GetFleet(req)
        ws = [w for w in self.workers.values() if w["fleetId"] == req["fleetId"]]
        items, extra = page(ws, req)
        return {"workers": items, **extra}

    def ListQueueEnvironments(self, req: dict[str, Any]) -> dict[str, Any]:
        self.queue(req["farmId"], req["queueId"])
        return {"environments": []}

    # -- storage profiles ---------------------------------------------------------
    def storage_profile(self, farm_id: str, profile_id: str) -> dict[str, Any]:
        self.farm(farm_id)
        sp = self.storage_profiles.get(profile_id)
        if sp is None or sp["farmId"] != farm_id:
            raise not_found("storageProfile", profile_id)
        return sp

    def CreateStorageProfile(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        sp_id = f"sp-{hexid()}"
        self.storage_profiles[sp_id] = {
            "farmId": req["farmId"],
            "storageProfileId": sp_id,
            "displayName": req["displayName"],
            "osFamily": req["osFamily"],
            "fileSystemLocations": req.get("fileSystemLocations", []),
            "createdAt": now(),
            "createdBy": USER,
        }
        return {"storageProfileId": sp_id}

    @staticmethod
    def _profile(sp: dict[str, Any], full: bool) -> dict[str, Any]:
        keys = ["storageProfileId", "displayName", "osFamily"]
        if full:
            keys.append("fileSystemLocations")
        return {k: sp[k] for k in keys}

    def GetStorageProfile(self, req: dict[str, Any]) -> dict[str, Any]:
        sp = self.storage_profile(req["farmId"], req["storageProfileId"])
        return {**self._profile(sp, True), "createdAt": sp["createdAt"], "createdBy": USER}

    def ListStorageProfiles(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        sps = [sp for sp in self.storage_profiles.values() if sp["farmId"] == req["farmId"]]
        items, extra = page(sps, req)
        return {"storageProfiles": [self._profile(sp, False) for sp in items], **extra}

    def _queue_profiles(self, req: dict[str, Any]) -> list[dict[str, Any]]:
        queue = self.queue(req["farmId"], req["queueId"])
        allowed = self.queue_settings.get(queue["queueId"], {}).get("allowedStorageProfileIds", [])
        return [self.storage_profile(req["farmId"], sp) for sp in allowed]

    def ListStorageProfilesForQueue(self, req: dict[str, Any]) -> dict[str, Any]:
        items, extra = page(self._queue_profiles(req), req)
        return {"storageProfiles": [self._profile(sp, False) for sp in items], **extra}

    def GetStorageProfileForQueue(self, req: dict[str, Any]) -> dict[str, Any]:
        for sp in self._queue_profiles(req):
            if sp["storageProfileId"] == req["storageProfileId"]:
                return self._profile(sp, True)
        raise not_found("storageProfile", req["storageProfileId"])

    def _credentials(self, req: dict[str, Any]) -> dict[str, Any]:
        self.queue(req["farmId"], req["queueId"])
        return {
            "credentials": {
                "accessKeyId": "ASIAFAKEQUEUEROLE",
                "secretAccessKey": "fake-secret",
                "sessionToken": "fake-session-token",
                "expiration": now() + dt.timedelta(hours=1),
            }
        }

    AssumeQueueRoleForUser = _credentials
    AssumeQueueRoleForRead = _credentials

