// SPDX-License-Identifier: Apache-2.0
//
// teeform's own test contracts: the parts of the DstackApp / DstackKms interface that teeform
// and its simulator use (names, selectors and events match dstack's contracts), without
// upgradeability, TCB or OS-image policy. For tests on a local chain only.
pragma solidity ^0.8.20;

/// Per-app authorisation: which compose hashes and devices may boot the app.
contract TestDstackApp {
    address public owner;
    bool public allowAnyDevice;
    mapping(bytes32 => bool) public allowedComposeHashes;
    mapping(bytes32 => bool) public allowedDeviceIds;

    event ComposeHashAdded(bytes32 composeHash);
    event ComposeHashRemoved(bytes32 composeHash);
    event DeviceAdded(bytes32 deviceId);
    event DeviceRemoved(bytes32 deviceId);
    event AllowAnyDeviceSet(bool allowAny);

    modifier onlyOwner() {
        require(msg.sender == owner, "TestDstackApp: caller is not the owner");
        _;
    }

    constructor(address initialOwner, bool anyDevice, bytes32 deviceId, bytes32 composeHash) {
        owner = initialOwner;
        allowAnyDevice = anyDevice;
        if (deviceId != bytes32(0)) {
            allowedDeviceIds[deviceId] = true;
            emit DeviceAdded(deviceId);
        }
        if (composeHash != bytes32(0)) {
            allowedComposeHashes[composeHash] = true;
            emit ComposeHashAdded(composeHash);
        }
    }

    function addComposeHash(bytes32 composeHash) external onlyOwner {
        allowedComposeHashes[composeHash] = true;
        emit ComposeHashAdded(composeHash);
    }

    function removeComposeHash(bytes32 composeHash) external onlyOwner {
        allowedComposeHashes[composeHash] = false;
        emit ComposeHashRemoved(composeHash);
    }

    function addDevice(bytes32 deviceId) external onlyOwner {
        allowedDeviceIds[deviceId] = true;
        emit DeviceAdded(deviceId);
    }

    function removeDevice(bytes32 deviceId) external onlyOwner {
        allowedDeviceIds[deviceId] = false;
        emit DeviceRemoved(deviceId);
    }

    function setAllowAnyDevice(bool allowAny) external onlyOwner {
        allowAnyDevice = allowAny;
        emit AllowAnyDeviceSet(allowAny);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        owner = newOwner;
    }
}

/// The KMS contract: deploys and registers app contracts (the factory path `phala deploy` uses).
contract TestDstackKms {
    mapping(address => bool) public registeredApps;

    event AppRegistered(address appId);
    event AppDeployedViaFactory(address indexed appId, address indexed deployer);

    function deployAndRegisterApp(
        address deployer,
        bool disableUpgrades,
        bool allowAnyDevice,
        bytes32 deviceId,
        bytes32 composeHash
    ) external returns (address) {
        disableUpgrades; // these test apps are never upgradeable
        TestDstackApp app = new TestDstackApp(deployer, allowAnyDevice, deviceId, composeHash);
        address appId = address(app);
        registeredApps[appId] = true;
        emit AppRegistered(appId);
        emit AppDeployedViaFactory(appId, deployer);
        return appId;
    }

    function registerApp(address appId) external {
        require(appId != address(0), "TestDstackKms: zero app id");
        registeredApps[appId] = true;
        emit AppRegistered(appId);
    }
}
