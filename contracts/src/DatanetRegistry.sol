// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title DatanetRegistry
/// @notice Datanets and their contribution roots. Each committed version of a Datanet carries a
/// Merkle root over its (chunk id, contributor) pairs, so anyone can prove that a chunk was
/// contributed by an address at that version. Leaves follow OpenZeppelin's StandardMerkleTree:
/// keccak256(bytes.concat(keccak256(abi.encode(chunkId, contributor)))), sorted-pair hashing.
/// It also holds the training roots of adapters fine-tuned on Datanets: the root of an
/// adapter's training log (which names every example and chunk each step read), written once,
/// so anyone holding the log can check it is the one the adapter was published with.
contract DatanetRegistry {
    struct Datanet {
        address owner;
        uint64 versions;
    }

    /// @dev Datanet id = keccak256(bytes(name)).
    mapping(bytes32 => Datanet) private _datanets;
    mapping(bytes32 => mapping(uint64 => bytes32)) private _roots;
    /// @dev Adapter id (`adapterId`) => the root of its training log.
    mapping(bytes32 => bytes32) private _trainingRoots;

    event DatanetRegistered(bytes32 indexed id, string name, address indexed owner);
    event ContributionRootCommitted(bytes32 indexed id, uint64 indexed version, bytes32 root);
    event DatanetOwnershipTransferred(bytes32 indexed id, address indexed from, address indexed to);
    event AdapterTrainingCommitted(bytes32 indexed id, string name, address indexed registrant, bytes32 trainingRoot);

    error DatanetExists(bytes32 id);
    error UnknownDatanet(bytes32 id);
    error NotDatanetOwner(bytes32 id, address caller);
    error EmptyName();
    error EmptyRoot();
    error ZeroAddress();
    error UnknownVersion(bytes32 id, uint64 version);
    error AdapterCommitted(bytes32 id);
    error UnknownAdapter(bytes32 id);

    /// @notice Registers `name` under the caller, who owns it. Entries are keyed by registrant
    /// and name (`datanetId`): anyone may register any name, under their own address only, so
    /// no one can take an operator's name first and lock it out.
    function register(string calldata name) external returns (bytes32 id) {
        if (bytes(name).length == 0) revert EmptyName();
        id = datanetId(msg.sender, name);
        if (_datanets[id].owner != address(0)) revert DatanetExists(id);
        _datanets[id] = Datanet({owner: msg.sender, versions: 0});
        emit DatanetRegistered(id, name, msg.sender);
    }

    /// @notice Commits the contribution root of the Datanet's next version (1, 2, ...).
    function commitRoot(bytes32 id, bytes32 root) external returns (uint64 version) {
        Datanet storage datanet = _owned(id);
        if (root == bytes32(0)) revert EmptyRoot();
        version = ++datanet.versions;
        _roots[id][version] = root;
        emit ContributionRootCommitted(id, version, root);
    }

    function transferDatanetOwnership(bytes32 id, address to) external {
        Datanet storage datanet = _owned(id);
        if (to == address(0)) revert ZeroAddress();
        emit DatanetOwnershipTransferred(id, datanet.owner, to);
        datanet.owner = to;
    }

    /// @notice Commits the training root of the adapter `name`, under the caller, once: an
    /// adapter's training cannot be rewritten after it is published.
    function commitAdapterTraining(string calldata name, bytes32 trainingRoot) external returns (bytes32 id) {
        if (bytes(name).length == 0) revert EmptyName();
        if (trainingRoot == bytes32(0)) revert EmptyRoot();
        id = adapterId(msg.sender, name);
        if (_trainingRoots[id] != bytes32(0)) revert AdapterCommitted(id);
        _trainingRoots[id] = trainingRoot;
        emit AdapterTrainingCommitted(id, name, msg.sender, trainingRoot);
    }

    /// @notice The id of the adapter `name` as committed by `registrant` (apart from Datanet
    /// ids: the same name may be both).
    function adapterId(address registrant, string calldata name) public pure returns (bytes32) {
        return keccak256(abi.encode(registrant, "adapter", name));
    }

    function adapterTrainingRoot(bytes32 id) external view returns (bytes32 root) {
        root = _trainingRoots[id];
        if (root == bytes32(0)) revert UnknownAdapter(id);
    }

    /// @notice The id of `name` as registered by `registrant`.
    function datanetId(address registrant, string calldata name) public pure returns (bytes32) {
        return keccak256(abi.encode(registrant, name));
    }

    function ownerOf(bytes32 id) external view returns (address) {
        return _existing(id).owner;
    }

    function versions(bytes32 id) external view returns (uint64) {
        return _existing(id).versions;
    }

    function contributionRoot(bytes32 id, uint64 version) public view returns (bytes32 root) {
        root = _roots[id][version];
        if (root == bytes32(0)) revert UnknownVersion(id, version);
    }

    /// @notice True when `proof` shows that `contributor` contributed `chunkId` at `version`.
    function proveContribution(bytes32 id, uint64 version, bytes32 chunkId, address contributor, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(chunkId, contributor))));
        return MerkleProof.verifyCalldata(proof, contributionRoot(id, version), leaf);
    }

    function _existing(bytes32 id) private view returns (Datanet storage datanet) {
        datanet = _datanets[id];
        if (datanet.owner == address(0)) revert UnknownDatanet(id);
    }

    function _owned(bytes32 id) private view returns (Datanet storage datanet) {
        datanet = _existing(id);
        if (datanet.owner != msg.sender) revert NotDatanetOwner(id, msg.sender);
    }
}
