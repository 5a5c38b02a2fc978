// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @title AttributionPayouts
/// @notice Holds what payers deposited and pays contributors what the off-chain ledger credited
/// them out of it. A payer's tokens come in through `deposit` (the ledger records each
/// `Deposited` event once, as the payer's balance; answers are charged to it). Each epoch the settler
/// posts one Merkle root over every account's cumulative total (leaf:
/// keccak256(bytes.concat(keccak256(abi.encode(index, account, cumulativeAmount)))), OpenZeppelin's
/// StandardMerkleTree). A claim pays the difference between the proven cumulative total and what
/// the account was already paid, so nothing is ever paid twice, whoever submits it. Epoch numbers
/// strictly increase: the same epoch cannot be posted twice.
/// Solvency: an epoch carries its cumulative total (every credit so far), which may not exceed
/// what was deposited, and never falls; the contract pays out at most that total. So what it
/// pays never exceeds what payers deposited, whatever root it is given.
/// @dev `index` is the account's place in the ledger (assigned once, when it first earns, and
/// never changed), so that what each account was paid packs three to a storage word: a first
/// payment then costs a third of a fresh slot instead of a whole one.
contract AttributionPayouts is AccessControl, Pausable {
    using SafeERC20 for IERC20;

    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    /// Each word holds three 85-bit lanes of paid totals; a lane holding LANE_MAX means the
    /// account's total (2^85 - 1 or more, i.e. past 3.8e25 base units) lives in `_paidLarge`.
    uint256 private constant LANE_BITS = 85;
    uint256 private constant LANE_MAX = (1 << LANE_BITS) - 1;

    IERC20 public immutable token;
    /// One storage word with Pausable's flag (8 bits): the latest epoch (32 bits), its
    /// cumulative total and what claims and batches paid, ever (104 bits each, 2e31 base units:
    /// 2e13 tokens of 18 decimals). A claim reads the flag, the epoch and both totals, and
    /// raises the paid total, for one cold load and one write.
    uint32 private _latestEpoch;
    uint104 private _epochTotal;
    uint104 private _totalPaid;
    /// @notice Every posted epoch's payout root. The receipts head is in its EpochPosted event
    /// (logs are part of the chain too), which keeps a posting to one fresh storage slot.
    mapping(uint64 => bytes32) public epochRoot;
    mapping(uint256 => uint256) private _paidWords;
    mapping(uint256 => uint256) private _paidLarge;
    /// @notice Every token deposited through `deposit`, ever.
    uint256 public totalDeposited;

    event EpochPosted(uint64 indexed epoch, bytes32 payoutRoot, bytes32 receiptsHead, uint256 total);
    /// `from` paid `amount` of the token into the contract for `payer`'s answers.
    event Deposited(address indexed payer, address indexed from, uint256 amount);
    event Claimed(uint256 indexed index, address indexed account, uint256 amount);
    /// One per batch; each payment in it is the token's own Transfer event.
    event BatchPushed(uint64 indexed epoch, uint256 recipients, uint256 total);

    error EpochNotIncreasing(uint64 epoch, uint64 latest);
    error EmptyRoot();
    error NoEpoch();
    error InvalidProof(address account);
    error InvalidBatchProof();
    error NothingToClaim(address account);
    error LengthMismatch();
    error ZeroAddress();
    error ZeroAmount();
    error EpochOverfunded(uint256 total, uint256 deposited);
    error TotalFalling(uint256 total, uint256 latest);
    error OverPaid(uint256 paid, uint256 epochTotal);
    error EpochOutOfRange(uint64 epoch);

    constructor(IERC20 token_, address admin, address settler) {
        if (address(token_) == address(0) || admin == address(0) || settler == address(0)) revert ZeroAddress();
        token = token_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
        _grantRole(SETTLER_ROLE, settler);
    }

    /// @notice Takes `amount` of the token from the caller (who approved it) for `payer`: the
    /// ledger credits it to the payer's balance once `Deposited` has its confirmations. What is
    /// recorded is what arrived (a token that charges a transfer fee delivers less).
    function deposit(address payer, uint256 amount) external whenNotPaused returns (uint256 received) {
        if (payer == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        received = token.balanceOf(address(this)) - before;
        // Nothing arrived (a token that takes it all as a fee): no deposit to record.
        if (received == 0) revert ZeroAmount();
        totalDeposited += received;
        emit Deposited(payer, msg.sender, received);
    }

    /// @notice Posts epoch `epoch` (greater than every epoch before it) with its cumulative
    /// `total`, which may not exceed what was deposited nor fall below the last epoch's.
    function postEpoch(uint64 epoch, bytes32 root, bytes32 head, uint256 total)
        external
        onlyRole(SETTLER_ROLE)
        whenNotPaused
    {
        if (epoch <= _latestEpoch) revert EpochNotIncreasing(epoch, _latestEpoch);
        if (epoch > type(uint32).max) revert EpochOutOfRange(epoch);
        if (root == bytes32(0)) revert EmptyRoot();
        if (total > totalDeposited || total > type(uint104).max) revert EpochOverfunded(total, totalDeposited);
        if (total < _epochTotal) revert TotalFalling(total, _epochTotal);
        _latestEpoch = uint32(epoch);
        epochRoot[epoch] = root;
        _epochTotal = uint104(total);
        emit EpochPosted(epoch, root, head, total);
    }

    /// @notice Pays `account` what its proven cumulative total exceeds what it was paid. Anyone
    /// may submit it; the tokens go to `account`.
    function claim(uint256 index, address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        external
        whenNotPaused
        returns (uint256 amount)
    {
        if (!MerkleProof.verifyCalldata(proof, _latestRoot(), _leaf(index, account, cumulativeAmount))) {
            revert InvalidProof(account);
        }
        amount = _recordPaid(index, cumulativeAmount);
        if (amount == 0) revert NothingToClaim(account);
        _addPaid(amount);
        token.safeTransfer(account, amount);
        emit Claimed(index, account, amount);
    }

    /// @notice Pays many accounts in one transaction, proven together by one multiproof
    /// (OpenZeppelin's `getMultiProof` order). Accounts with nothing new are skipped, so a claim
    /// made in between does not block the batch; a bad proof reverts it.
    function pushBatch(
        uint256[] calldata indices,
        address[] calldata accounts,
        uint256[] calldata cumulativeAmounts,
        bytes32[] calldata proof,
        bool[] calldata proofFlags
    ) external onlyRole(SETTLER_ROLE) whenNotPaused returns (uint256 total) {
        uint256 n = accounts.length;
        if (indices.length != n || cumulativeAmounts.length != n) revert LengthMismatch();
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) {
            leaves[i] = _leaf(indices[i], accounts[i], cumulativeAmounts[i]);
        }
        if (!MerkleProof.multiProofVerifyCalldata(proof, proofFlags, _latestRoot(), leaves)) revert InvalidBatchProof();
        uint256 recipients;
        (recipients, total) = _payAll(indices, accounts, cumulativeAmounts);
        _addPaid(total);
        emit BatchPushed(_latestEpoch, recipients, total);
    }

    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    /// @notice The latest posted epoch (0 before the first).
    function latestEpoch() external view returns (uint64) {
        return _latestEpoch;
    }

    /// @notice The latest epoch's cumulative total: what the ledger credited, ever.
    function epochTotal() external view returns (uint128) {
        return _epochTotal;
    }

    /// @notice What claims and batches paid, ever (never more than `epochTotal`).
    function totalPaid() external view returns (uint128) {
        return _totalPaid;
    }

    /// @notice What the account at `index` was paid so far, in total.
    function paid(uint256 index) public view returns (uint256) {
        uint256 lane = (_paidWords[index / 3] >> ((index % 3) * LANE_BITS)) & LANE_MAX;
        return lane == LANE_MAX ? _paidLarge[index] : lane;
    }

    /// @notice What the account at `index` can claim now, given its proven cumulative total.
    function claimable(uint256 index, uint256 cumulativeAmount) external view returns (uint256) {
        uint256 already = paid(index);
        return cumulativeAmount > already ? cumulativeAmount - already : 0;
    }

    /// @notice The latest epoch's root: claims and batches are proven against it.
    function payoutRoot() public view returns (bytes32) {
        return epochRoot[_latestEpoch];
    }

    function _latestRoot() private view returns (bytes32) {
        uint32 epoch = _latestEpoch;
        if (epoch == 0) revert NoEpoch();
        return epochRoot[epoch];
    }

    function _leaf(uint256 index, address account, uint256 cumulativeAmount) private pure returns (bytes32 leaf) {
        // keccak256(bytes.concat(keccak256(abi.encode(index, account, cumulativeAmount)))),
        // hashed in scratch memory: a batch allocates nothing per leaf.
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, index)
            mstore(add(ptr, 0x20), account)
            mstore(add(ptr, 0x40), cumulativeAmount)
            mstore(0x00, keccak256(ptr, 0x60))
            leaf := keccak256(0x00, 0x20)
        }
    }

    /// Counts `amount` as paid out; refuses to pay past the latest epoch's total (which is
    /// within what was deposited).
    function _addPaid(uint256 amount) private {
        uint256 paidNow = uint256(_totalPaid) + amount;
        if (paidNow > _epochTotal) revert OverPaid(paidNow, _epochTotal);
        _totalPaid = uint104(paidNow);
    }

    /// Pays every account of a proven batch what it is owed; how many were paid, and how much.
    function _payAll(uint256[] calldata indices, address[] calldata accounts, uint256[] calldata cumulativeAmounts)
        private
        returns (uint256 recipients, uint256 total)
    {
        for (uint256 i = 0; i < accounts.length; ++i) {
            uint256 amount = _recordPaid(indices[i], cumulativeAmounts[i]);
            if (amount != 0) {
                token.safeTransfer(accounts[i], amount);
                total += amount;
                ++recipients;
            }
        }
    }

    /// Raises the account's paid total to `cumulativeAmount`; what that adds (0 if nothing).
    function _recordPaid(uint256 index, uint256 cumulativeAmount) private returns (uint256 amount) {
        uint256 slot = index / 3;
        uint256 shift = (index % 3) * LANE_BITS;
        uint256 word = _paidWords[slot];
        uint256 lane = (word >> shift) & LANE_MAX;
        uint256 already = lane == LANE_MAX ? _paidLarge[index] : lane;
        if (cumulativeAmount <= already) return 0;
        amount = cumulativeAmount - already;
        uint256 newLane = cumulativeAmount;
        if (cumulativeAmount >= LANE_MAX) {
            _paidLarge[index] = cumulativeAmount;
            newLane = LANE_MAX;
        }
        if (newLane != lane) _paidWords[slot] = (word & ~(LANE_MAX << shift)) | (newLane << shift);
    }
}
