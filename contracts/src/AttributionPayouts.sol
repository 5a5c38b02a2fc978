// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @title AttributionPayouts
/// @notice Pays contributors what the off-chain ledger credited them. Each epoch the settler
/// posts one Merkle root over every account's cumulative total (leaf:
/// keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount)))), OpenZeppelin's
/// StandardMerkleTree). A claim pays the difference between the proven cumulative total and what
/// the account was already paid, so nothing is ever paid twice, whoever submits it. Epoch numbers
/// strictly increase: the same epoch cannot be posted twice.
contract AttributionPayouts is AccessControl, Pausable {
    using SafeERC20 for IERC20;

    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    IERC20 public immutable token;
    uint64 public latestEpoch;
    /// @notice The latest epoch's root: claims are proven against it.
    bytes32 public payoutRoot;
    mapping(uint64 => bytes32) public epochRoot;
    mapping(uint64 => bytes32) public receiptsHead;
    mapping(address => uint256) public paid;

    event EpochPosted(uint64 indexed epoch, bytes32 payoutRoot, bytes32 receiptsHead);
    event Claimed(address indexed account, uint64 indexed epoch, uint256 amount, uint256 cumulativeAmount);

    error EpochNotIncreasing(uint64 epoch, uint64 latest);
    error EmptyRoot();
    error NoEpoch();
    error InvalidProof(address account);
    error NothingToClaim(address account);
    error LengthMismatch();
    error ZeroAddress();

    constructor(IERC20 token_, address admin, address settler) {
        if (address(token_) == address(0) || admin == address(0) || settler == address(0)) revert ZeroAddress();
        token = token_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
        _grantRole(SETTLER_ROLE, settler);
    }

    /// @notice Posts epoch `epoch` (greater than every epoch before it).
    function postEpoch(uint64 epoch, bytes32 root, bytes32 head) external onlyRole(SETTLER_ROLE) whenNotPaused {
        if (epoch <= latestEpoch) revert EpochNotIncreasing(epoch, latestEpoch);
        if (root == bytes32(0)) revert EmptyRoot();
        latestEpoch = epoch;
        payoutRoot = root;
        epochRoot[epoch] = root;
        receiptsHead[epoch] = head;
        emit EpochPosted(epoch, root, head);
    }

    /// @notice Pays `account` what its proven cumulative total exceeds what it was paid. Anyone
    /// may submit it; the tokens go to `account`.
    function claim(address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        external
        whenNotPaused
        returns (uint256 amount)
    {
        amount = _pay(account, cumulativeAmount, proof);
        if (amount == 0) revert NothingToClaim(account);
    }

    /// @notice Pays many accounts in one transaction. Accounts with nothing new are skipped, so
    /// one claim made in between does not block the batch; a bad proof reverts it.
    function pushBatch(address[] calldata accounts, uint256[] calldata cumulativeAmounts, bytes32[][] calldata proofs)
        external
        onlyRole(SETTLER_ROLE)
        whenNotPaused
        returns (uint256 total)
    {
        if (accounts.length != cumulativeAmounts.length || accounts.length != proofs.length) revert LengthMismatch();
        for (uint256 i = 0; i < accounts.length; ++i) {
            total += _pay(accounts[i], cumulativeAmounts[i], proofs[i]);
        }
    }

    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    /// @notice What `account` can claim now, given its proven cumulative total.
    function claimable(address account, uint256 cumulativeAmount) external view returns (uint256) {
        uint256 already = paid[account];
        return cumulativeAmount > already ? cumulativeAmount - already : 0;
    }

    function _pay(address account, uint256 cumulativeAmount, bytes32[] calldata proof) private returns (uint256 amount) {
        if (latestEpoch == 0) revert NoEpoch();
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, payoutRoot, leaf)) revert InvalidProof(account);
        uint256 already = paid[account];
        if (cumulativeAmount <= already) return 0;
        amount = cumulativeAmount - already;
        paid[account] = cumulativeAmount;
        token.safeTransfer(account, amount);
        emit Claimed(account, latestEpoch, amount, cumulativeAmount);
    }
}
